// The CommonJS entry, as a Node.js app requires it, with a WebSocket of its
// choice (the `ws` package, whose path is given) and the token sent as an
// `Authorization` header on the upgrade (a hub that requires tokens).
// Usage: node cjs.cjs WS_URL HTTP_URL WS_PACKAGE_PATH TOKEN_FOR_SENDER TOKEN_FOR_RECEIVER
const { Client } = require("switchboard-js");

// Whatever this Node has, the client must use the constructor it is given.
delete globalThis.WebSocket;
const [url, http, wsPath, senderToken, receiverToken] = process.argv.slice(2);
const WebSocket = require(wsPath);
const tokens = { sender: senderToken, receiver: receiverToken };

import("./scenario.mjs")
  .then(({ scenario }) =>
    scenario(Client, {
      url,
      http,
      connectAs: (name) => ({ WebSocket, headers: { Authorization: `Bearer ${tokens[name]}` } }),
      user: (name) => `cjs-${name}`,
    }),
  )
  .then((result) => console.log(JSON.stringify(result)))
  .catch((error) => {
    console.error(error);
    process.exit(1);
  });
