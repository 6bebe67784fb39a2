import { Client } from "switchboard-js";

const client = new Client("ws://localhost:8080/ws", {
  userId: "alice",
  reconnect: { minDelayMs: 500, maxDelayMs: 30000, maxAttempts: 0 }, // 0 = forever
});

client.on("connected", ({ session }) => console.log("connected", session));
client.on("disconnected", ({ code, reason, willReconnect }) =>
  console.log("lost", code, reason, willReconnect ? "(retrying)" : ""));
client.on("presence", ({ room, user, action }) => console.log(user, action, room));
client.on("error", (error) => console.warn(error.kind, error.message));

const stop = client.on("chat", (message) => {
  console.log(`${message.from} in ${message.room}:`, message.data);
});

await client.connect();
const present = await client.join("general");        // users in the room
await client.publish("general", "chat", { text: "hi" });
const tabs = await client.send("bob", "dm", "psst");  // bob's connections reached

stop();               // unsubscribe that callback (or client.off("chat", callback))
await client.close(); // for good; client.disconnect() lets you connect() again
