// An application as a web developer writes it with a bundler: import the
// package and use it; the package's entry loads the WebAssembly module.
import { Client } from "switchboard-js";

const params = new URLSearchParams(location.search);
const status = document.querySelector("#status");
const log = document.querySelector("#log");

const client = new Client(params.get("hub"), { userId: params.get("user") ?? "vite" });
client.on("greeting", (message) => {
  const item = document.createElement("li");
  item.textContent = `${message.from}: ${message.data.text}`;
  log.append(item);
});
await client.connect();
await client.join("vite-room");
await client.publish("vite-room", "greeting", { text: "built by vite" });
status.textContent = "connected";
