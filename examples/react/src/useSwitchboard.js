// `useSwitchboard`: a React hook that holds one switchboard-js Client for
// the component's life. It connects on mount, joins `room`, collects the
// messages of `event` and the room's members, and closes on unmount (React's
// strict mode mounts twice in development: the first client is closed, the
// second one stays). The package loads its wasm on import: nothing to set up.
import { useEffect, useRef, useState } from "react";
import { Client } from "switchboard-js";

/**
 * @param {string} url the hub's WebSocket URL
 * @param {string} userId who to connect as (a hub without tokens; pass `getToken` for one with)
 * @param {string} room the room to join
 * @param {string} event the application event whose messages to collect
 * @returns {{ state: string, members: string[], messages: object[], publish: (data: unknown) => Promise<void>, error: string | null }}
 */
export function useSwitchboard(url, userId, room, event) {
  const [state, setState] = useState("connecting");
  const [members, setMembers] = useState([]);
  const [messages, setMessages] = useState([]);
  const [error, setError] = useState(null);
  const client = useRef(null);

  useEffect(() => {
    const current = new Client(url, { userId });
    client.current = current;
    const unsubscribe = [
      current.on("connected", () => setState("connected")),
      current.on("disconnected", ({ willReconnect }) => setState(willReconnect ? "connecting" : "disconnected")),
      // After every (re)join, presence lists start again from the ack.
      current.on("joined", (joined) => joined.room === room && setMembers(joined.members)),
      current.on("presence", (presence) => {
        if (presence.room !== room) return;
        setMembers((list) =>
          presence.action === "join"
            ? [...new Set([...list, presence.user])].sort()
            : list.filter((user) => user !== presence.user),
        );
      }),
      current.on(event, (message) => setMessages((list) => [...list, message])),
      current.on("error", (err) => setError(err.message)),
    ];
    current
      .connect()
      .then(() => current.join(room))
      .catch((err) => setError(err.message));
    return () => {
      unsubscribe.forEach((off) => off());
      client.current = null;
      current.close();
    };
  }, [url, userId, room, event]);

  const publish = (data) =>
    client.current ? client.current.publish(room, event, data) : Promise.reject(new Error("not connected"));
  return { state, members, messages, publish, error };
}
