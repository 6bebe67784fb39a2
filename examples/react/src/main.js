// A small React chat on the `useSwitchboard` hook (./useSwitchboard.js).
// Plain `createElement` calls, so Vite needs no JSX plugin. Try it:
//   npm ci && npm run build && node ../chat-web/serve.mjs --root dist
//   open http://127.0.0.1:5173/?hub=ws://127.0.0.1:8080/ws&user=ann
import { StrictMode, createElement as h, useState } from "react";
import { createRoot } from "react-dom/client";
import { useSwitchboard } from "./useSwitchboard.js";

const params = new URLSearchParams(location.search);
const HUB = params.get("hub") ?? "ws://127.0.0.1:8080/ws";
const USER = params.get("user") ?? "ann";

function Chat() {
  const { state, members, messages, publish, error } = useSwitchboard(HUB, USER, "react-room", "chat");
  const [text, setText] = useState("");
  const send = (event) => {
    event.preventDefault();
    if (text) publish({ text }).then(() => setText(""));
  };
  return h(
    "main",
    null,
    h("p", { id: "status", "data-state": state }, state),
    error && h("p", { id: "error" }, error),
    h("ul", { id: "members" }, members.map((user) => h("li", { key: user }, user))),
    h("ul", { id: "log" }, messages.map((m) => h("li", { key: `${m.offset}` }, `${m.from}: ${m.data.text}`))),
    h(
      "form",
      { id: "say", onSubmit: send },
      h("input", { id: "text", value: text, onChange: (e) => setText(e.target.value) }),
      h("button", { type: "submit" }, "Send"),
    ),
  );
}

createRoot(document.querySelector("#root")).render(h(StrictMode, null, h(Chat)));
