// A page on switchboard-js as a webpack 5 user writes it: import the class
// and use it, nothing to initialize first. Try it:
//   npm ci && npm run build && node ../../../examples/chat-web/serve.mjs --root dist
//   open http://127.0.0.1:5173/?hub=ws://127.0.0.1:8080/ws&user=ann
import { Client } from "switchboard-js";

const params = new URLSearchParams(location.search);
const status = document.getElementById("status");
const log = document.getElementById("log");

const client = new Client(params.get("hub") ?? "ws://127.0.0.1:8080/ws", {
  userId: params.get("user") ?? "ann",
});
client.on("chat", (message) => {
  const item = document.createElement("li");
  item.textContent = `${message.from}: ${message.data.text}`;
  log.append(item);
});
client.on("error", (error) => {
  status.textContent = `${error.kind}: ${error.message}`;
});

await client.connect();
await client.join("webpack-room");
status.dataset.state = client.state;
status.textContent = client.state;

document.getElementById("say").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  client.publish("webpack-room", "chat", { text: input.value }).then(() => (input.value = ""));
});
