// The example chat: pick a name, join a room, see who is present, send room
// and private messages, and watch the client reconnect when the hub restarts.
import init, { Client } from "switchboard-js";

const $ = (id) => document.getElementById(id);
const hub = new URLSearchParams(location.search).get("hub") ?? `ws://${location.hostname || "127.0.0.1"}:8080/ws`;
const present = new Set();
let client;
let room;

function log(kind, from, text) {
  const item = document.createElement("li");
  item.className = kind;
  if (from) {
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = kind === "private" ? `${from} (private): ` : `${from}: `;
    item.append(who);
  }
  item.append(text);
  $("log").append(item);
  item.scrollIntoView({ block: "end" });
}

function showPresent() {
  $("present").replaceChildren(
    ...[...present].sort().map((user) => Object.assign(document.createElement("li"), { textContent: user })),
  );
}

function setStatus(state, detail = "") {
  $("status").dataset.state = state;
  $("status").textContent = detail ? `${state} (${detail})` : state;
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("connect").disabled = true;
  await init();
  room = $("room").value.trim();
  client = new Client(hub, { userId: $("name").value.trim(), reconnect: { minDelayMs: 250, maxDelayMs: 5000 } });

  client.on("connecting", ({ attempt }) => setStatus("connecting", attempt ? `attempt ${attempt + 1}` : ""));
  client.on("connected", () => setStatus("connected"));
  client.on("disconnected", ({ code, willReconnect }) => {
    setStatus(willReconnect ? "connecting" : "disconnected", code ? `closed ${code}` : "");
    log("system", null, willReconnect ? "connection lost, reconnecting…" : "disconnected");
  });
  client.on("error", (error) => log("system", null, `error: ${error.message}`));
  // After a reconnect the client rejoins by itself; the member list it gets
  // back replaces ours, since presence events may have been missed meanwhile.
  client.on("joined", ({ members }) => {
    present.clear();
    for (const user of members) present.add(user);
    showPresent();
  });
  client.on("presence", ({ user, action }) => {
    if (action === "join") present.add(user); else present.delete(user);
    showPresent();
    log("system", null, `${user} ${action === "join" ? "joined" : "left"}`);
  });
  client.on("chat", (message) => {
    log(message.to ? "private" : "room", message.from, String(message.data?.text ?? ""));
  });

  try {
    await client.connect();
    await client.join(room);
    $("room-name").textContent = room;
    $("login").hidden = true;
    document.querySelector("main").hidden = false;
    $("text").focus();
  } catch (error) {
    log("system", null, `could not join: ${error.message}`);
    $("connect").disabled = false;
  }
});

$("compose").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("text").value;
  const to = $("to").value.trim();
  $("text").value = "";
  try {
    if (to) {
      const reached = await client.send(to, "chat", { text });
      log("private", `you → ${to}`, reached ? text : `${text} (not delivered: ${to} is offline)`);
    } else {
      await client.publish(room, "chat", { text });
    }
  } catch (error) {
    log("system", null, `not sent (${error.kind}): ${error.message}`);
  }
});
