// The README's JavaScript example (tests/node runs it against a live hub).

import { Client } from "switchboard-js"; // the .wasm loads on import: no init()

const client = new Client("ws://127.0.0.1:8080/ws", { userId: "alice" });
client.on("chat", (message) => console.log(message.from, message.data));
client.on("disconnected", ({ code, willReconnect }) => console.log("lost", code, willReconnect));

await client.connect();
const present = await client.join("general"); // who is in the room
await client.publish("general", "chat", { text: "hi" });
const reached = await client.send("bob", "dm", "psst"); // bob's connections
console.log(present, reached);
await client.close();
