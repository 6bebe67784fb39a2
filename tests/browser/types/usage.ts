// The whole switchboard-js API as a TypeScript application uses it, checked
// with `tsc --strict` (./scripts/test.sh). Each `@ts-expect-error` line is
// a mistake the declarations must refuse: if one ever compiles, tsc fails
// with "Unused '@ts-expect-error' directive".
import init, {
  Client,
  type ClientOptions,
  type ConnectedEvent,
  type DisconnectedEvent,
  type ErrorKind,
  type HistoryPage,
  type JoinedEvent,
  type Json,
  type LeftEvent,
  type MembersPage,
  type Message,
  type Payload,
  type Presence,
  type SwitchboardError,
} from "switchboard-js";

export async function app(): Promise<void> {
  await init();
  const options: ClientOptions = {
    userId: "ann",
    reconnect: { minDelayMs: 250, maxDelayMs: 10_000, maxAttempts: 0 },
    heartbeat: { intervalMs: 25_000, timeoutMs: 60_000 },
    requestTimeoutMs: 5_000,
    offlineQueue: 64,
    fallbacks: ["ws://127.0.0.1:8081/ws"],
    getToken: async () => "a.jwt.token",
    headers: { Authorization: "Bearer a.jwt.token" },
    WebSocket: globalThis.WebSocket,
  };
  const client = new Client("ws://127.0.0.1:8080/ws", options);

  const offConnected = client.on("connected", (e: ConnectedEvent) => {
    const who: string = e.user;
    const recovered: boolean | null = e.inboxRecovered;
    console.log(who, e.session, e.heartbeatMs, recovered);
  });
  client.on("connecting", (e) => console.log(e.attempt.toFixed()));
  client.on("disconnected", (e: DisconnectedEvent) => {
    const code: number | null = e.code;
    console.log(code, e.reason, e.willReconnect);
  });
  client.on("joined", (e: JoinedEvent) => {
    const members: string[] = e.members;
    const name: string | undefined = e.info?.name;
    console.log(e.room, members, e.memberCount, e.large, e.rejoin, e.recovered, e.byServer, name);
  });
  client.on("left", (e: LeftEvent) => console.log(e.room));
  client.on("presence", (p: Presence) => console.log(p.user, p.action === "join"));
  client.on("occupancy", (o) => console.log(o.room, o.count));
  client.on("message", (m: Message) => console.log(m.event, m.data));
  client.on<{ text: string }>("chat", (m) => {
    const text: string = m.data.text;
    const from: string = m.from;
    const offset: number | undefined = m.offset;
    console.log(text, from, offset, m.ts, m.room, m.to);
  });
  client.on("anything", (m: Message) => console.log(m.data));
  client.on("error", (err: SwitchboardError) => {
    const kind: ErrorKind = err.kind;
    if (kind === "server") console.log(err.code);
  });
  offConnected();

  await client.connect();
  const present: string[] = await client.join("general");
  await client.publish("general", "chat", { text: "hi", n: [1, 2.5, null, true] });
  await client.publishToOthers("general", "typing", null);
  const reached: number = await client.send("bob", "dm", "psst");
  // Bytes: a Uint8Array or an ArrayBuffer, received as a Uint8Array.
  await client.publish("files", "upload", new Uint8Array([1, 2, 3]));
  await client.send("bob", "key", new Uint8Array(4).buffer);
  const payload: Payload = new Uint8Array(1);
  client.on<Uint8Array>("upload", (m) => console.log(m.data.byteLength, payload));
  const page: HistoryPage = await client.history("general", 10, 50);
  const firstPage: MembersPage = await client.membersPage("general", null, 100);
  const everyone: string[] = await client.members("general");
  const result: Json = await client.rpc("orders.total", { order: 42 });
  await client.leave("general");
  console.log(present, reached, page.offset, page.messages.length, firstPage.cursor, everyone, result);
  console.log(client.state === "connected", client.isConnected);
  await client.disconnect();
  await client.close();

  // Mistakes the declarations refuse.
  // @ts-expect-error: an unknown option.
  new Client("ws://x/ws", { userID: "typo" });
  // @ts-expect-error: the URL is a string.
  new Client(8080, { userId: "ann" });
  // @ts-expect-error: header values are strings.
  new Client("ws://x/ws", { headers: { "X-Count": 1 } });
  // @ts-expect-error: `WebSocket` is a constructor, not an instance.
  new Client("ws://x/ws", { WebSocket: new WebSocket("ws://x/ws") });
  // @ts-expect-error: a lifecycle event's payload is not a Message.
  client.on("connected", (m: Message) => console.log(m.data));
  // @ts-expect-error: typed data is checked where it is read.
  client.on<{ text: string }>("chat", (m) => m.data.txt);
  // @ts-expect-error: data must be JSON or bytes, not a function.
  await client.publish("general", "chat", () => 1);
  // @ts-expect-error: bytes are a Uint8Array or an ArrayBuffer, not a Blob.
  await client.send("bob", "file", new Blob(["x"]));
  // @ts-expect-error: `join` resolves with names, not a number.
  const wrong: number = await client.join("general");
  // @ts-expect-error: the state is one of four strings.
  if (client.state === "open") console.log(wrong);
  // @ts-expect-error: reconnect delays are numbers.
  new Client("ws://x/ws", { reconnect: { minDelayMs: "fast" } });
}
