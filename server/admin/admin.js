// The admin page: polls the hub's HTTP API (with the admin key from this
// tab's sessionStorage, sent as a header) and drives its POST endpoints.
// Paths are relative, so the page works where an application nests the hub
// (`/realtime/admin` calls `/realtime/api/…`).
// Everything the hub returns is shown with textContent: user and room names
// come from clients and must never become markup.
"use strict";

const KEY = "switchboard-admin-key";
const REFRESH_MS = 2000;
const SAMPLES = 150; // five minutes at one sample per refresh
const history = [];
let timer = null;

const $ = (selector) => document.querySelector(selector);

function headers(json) {
  const h = {};
  const key = sessionStorage.getItem(KEY);
  if (key) h.Authorization = `Bearer ${key}`;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

class Unauthorized extends Error {}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) throw new Unauthorized("the API key was refused");
  const answer = await response.json().catch(() => null);
  if (!response.ok) {
    const message = answer?.error?.message ?? `HTTP ${response.status}`;
    throw new Error(message);
  }
  return answer;
}

function status(text, isError = false) {
  const line = $("#status");
  line.textContent = text;
  line.className = isError ? "error" : "";
}

function showLogin(message) {
  clearInterval(timer);
  timer = null;
  $("#main").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  const error = $("#login-error");
  error.hidden = !message;
  error.textContent = message ?? "";
  $("#key").focus();
}

function showMain() {
  $("#login").hidden = true;
  $("#main").hidden = false;
  $("#logout").hidden = !sessionStorage.getItem(KEY);
  if (!timer) timer = setInterval(refresh, REFRESH_MS);
}

function duration(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h`;
}

function cell(row, text) {
  const td = row.insertCell();
  td.textContent = text;
  return td;
}

function button(td, text, className, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  b.addEventListener("click", action);
  td.append(b);
}

function drawChart() {
  const canvas = $("#chart");
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  if (history.length < 2) return;
  const series = [
    ["connections", "#2563eb"],
    ["mps", "#f79009"],
  ];
  for (const [field, color] of series) {
    const max = Math.max(1, ...history.map((s) => s[field]));
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    // The newest sample is at the right edge; the first minute fills in.
    const span = Math.max(history.length - 1, 29);
    history.forEach((sample, i) => {
      const x = width - ((history.length - 1 - i) / span) * width;
      const y = height - 8 - (sample[field] / max) * (height - 24);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
    ctx.fillStyle = color;
    ctx.font = "12px system-ui";
    ctx.fillText(`max ${Math.round(max * 10) / 10}`, field === "mps" ? width - 90 : 6, 14);
  }
}

async function showRoom(id) {
  try {
    const room = await api("GET", `api/rooms/${encodeURIComponent(id)}`);
    $("#room-detail").hidden = false;
    $("#room-title").textContent = room.name ? `${room.name} (${room.id})` : room.id;
    $("#room-description").textContent = [room.description, room.data === undefined ? "" : JSON.stringify(room.data)]
      .filter(Boolean)
      .join(" · ");
    const list = $("#room-members");
    list.replaceChildren(
      ...room.members.map((user) => {
        const li = document.createElement("li");
        li.textContent = user;
        return li;
      }),
    );
  } catch (err) {
    status(err.message, true);
  }
}

async function refresh() {
  try {
    const [stats, rooms, online] = await Promise.all([
      api("GET", "api/stats"),
      api("GET", "api/rooms"),
      api("GET", "api/online"),
    ]);
    showMain();
    const figures = stats.cluster ?? stats;
    $("#stat-connections").textContent = figures.connections;
    $("#stat-users").textContent = figures.users;
    $("#stat-rooms").textContent = figures.rooms;
    $("#stat-mps").textContent = stats.rates.messages_per_sec.toFixed(1);
    $("#stat-cps").textContent = stats.rates.connections_per_sec.toFixed(1);
    $("#stat-uptime").textContent = duration(stats.uptime_ms);
    history.push({ connections: figures.connections, mps: stats.rates.messages_per_sec });
    if (history.length > SAMPLES) history.shift();
    drawChart();

    const roomRows = $("#rooms tbody");
    roomRows.replaceChildren();
    for (const room of rooms.rooms) {
      const row = roomRows.insertRow();
      row.dataset.room = room.id;
      cell(row, room.id);
      cell(row, room.name ?? "");
      cell(row, room.members);
      cell(row, room.connections);
      cell(row, room.messages);
      const actions = row.insertCell();
      button(actions, "details", "link", () => showRoom(room.id));
      if (room.created_at !== undefined && !room.default) {
        actions.append(" ");
        button(actions, "delete", "danger", () => deleteRoom(room.id));
      }
    }

    const onlineRows = $("#online tbody");
    onlineRows.replaceChildren();
    for (const user of online.users) {
      const row = onlineRows.insertRow();
      row.dataset.user = user;
      cell(row, user);
      cell(row, online.connections?.[user] ?? "");
      button(row.insertCell(), "disconnect", "danger", () => disconnect(user, "disconnected by an operator"));
    }
  } catch (err) {
    if (err instanceof Unauthorized) {
      const hadKey = Boolean(sessionStorage.getItem(KEY));
      sessionStorage.removeItem(KEY);
      showLogin(hadKey ? "That key was refused." : null);
    } else {
      status(`Refresh failed: ${err.message}`, true);
    }
  }
}

/** JSON if it parses, else the text itself; absent when empty. */
function data(text) {
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

async function deleteRoom(id) {
  if (!confirm(`Delete the room ${id}? Everyone in it is taken out.`)) return;
  try {
    const answer = await api("DELETE", `api/rooms/${encodeURIComponent(id)}`);
    status(`Deleted room ${id}; ${answer.members} user(s) taken out.`);
    refresh();
  } catch (err) {
    status(err.message, true);
  }
}

async function disconnect(user, reason) {
  try {
    const answer = await api("POST", "api/disconnect", { user, reason });
    status(`Disconnected ${user}: ${answer.disconnected} connection(s).`);
    refresh();
  } catch (err) {
    status(err.message, true);
  }
}

function onSubmit(id, action) {
  $(id).addEventListener("submit", async (event) => {
    event.preventDefault();
    const fields = Object.fromEntries(new FormData(event.target));
    try {
      status(await action(fields));
      refresh();
    } catch (err) {
      status(err.message, true);
    }
  });
}

onSubmit("#broadcast-form", async ({ event, room, data: text }) => {
  const body = { event, data: data(text) ?? null };
  if (room) body.room = room;
  const answer = await api("POST", "api/broadcast", body);
  return `Broadcast to ${answer.delivered} connection(s).`;
});

onSubmit("#send-form", async ({ to, event, data: text }) => {
  const answer = await api("POST", "api/send", { to, event, data: data(text) ?? null });
  return `Sent to ${to}: ${answer.status}.`;
});

onSubmit("#room-form", async ({ id, name, description, data: text }) => {
  const body = { id };
  if (name) body.name = name;
  if (description) body.description = description;
  const value = data(text);
  if (value !== undefined) body.data = value;
  const room = await api("POST", "api/rooms", body);
  return `Created room ${room.id}.`;
});

onSubmit("#disconnect-form", async ({ user, reason }) => {
  const answer = await api("POST", "api/disconnect", { user, reason });
  return `Disconnected ${user}: ${answer.disconnected} connection(s).`;
});

$("#login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("#key").value);
  $("#key").value = "";
  refresh();
});

$("#logout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  showLogin();
});

fetch("health")
  .then((r) => r.json())
  .then((health) => {
    const pill = $("#health");
    pill.textContent = `${health.status} · v${health.version}`;
    pill.className = `pill ${health.status === "ok" ? "ok" : "down"}`;
    // What the hub warns about at start (insecure mode), where the
    // operator looks, not only in its log.
    const warnings = health.warnings ?? [];
    const banner = $("#warnings");
    banner.textContent = warnings.join(" ");
    banner.hidden = warnings.length === 0;
  })
  .catch(() => {});

refresh();
