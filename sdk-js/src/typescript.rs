//! The TypeScript declarations wasm-bindgen cannot infer: the options object,
//! every event's payload, message shapes, and `on`/`off` overloads (merged
//! into the generated `Client` class by declaration merging).

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/**
 * What `publish` and `send` take: JSON data, or bytes (sent as a binary message): a
 * `Uint8Array` (a Node.js `Buffer` is one), any other view of bytes, or an `ArrayBuffer`.
 */
export type Payload = Json | ArrayBufferView | ArrayBuffer;

/** Reconnect policy: full-jitter exponential backoff. */
export interface ReconnectOptions {
  /** Reconnect at all (default true). */
  enabled?: boolean;
  /** Smallest delay before an attempt, ms (default 500). */
  minDelayMs?: number;
  /** Largest delay before an attempt, ms (default 30000). */
  maxDelayMs?: number;
  /** Consecutive failed attempts before giving up; 0 = never (default 0). */
  maxAttempts?: number;
}

/** Client-side heartbeat: ping every `intervalMs`, drop the connection after `timeoutMs` of silence. */
export interface HeartbeatOptions {
  intervalMs: number;
  timeoutMs: number;
}

/** Options of `new Client(url, options)`. */
export interface ClientOptions {
  /** The user id to connect as, on a hub without tokens (development). */
  userId?: string;
  /** A JWT; the hub names the user from its `sub`. Sent in the first frame, never in the URL. */
  token?: string;
  /** Called before every connection attempt and when the hub warns that the token expires soon. */
  getToken?: () => string | Promise<string>;
  /** Reconnect policy, or `false` to never reconnect. */
  reconnect?: ReconnectOptions | false;
  /** Heartbeat (default 25 s / 60 s), or `false` for none. */
  heartbeat?: HeartbeatOptions | false;
  /** How long a request waits for the hub's answer, ms (default 10000). Also bounds `getToken`. */
  requestTimeoutMs?: number;
  /**
   * How long one connection attempt may take, opening and the hub's `welcome` together, ms
   * (default 20000); then the next URL is tried. Timers above 2147483647 ms are refused.
   */
  connectTimeoutMs?: number;
  /** Publishes and sends that may wait while offline (default 1024). */
  offlineQueue?: number;
  /**
   * Other URLs of the same hub (its other nodes), tried in turn after the first when a
   * connection attempt fails; a lost connection tries its own URL again first. Not needed
   * behind a load balancer.
   */
  fallbacks?: string[];
  /**
   * Headers sent with the WebSocket upgrade, such as `Authorization: Bearer …`: Node.js, Deno and
   * Bun send them (as `new WebSocket(url, { headers })`); browsers cannot, and warn instead.
   */
  headers?: Record<string, string>;
  /**
   * The `WebSocket` constructor to use instead of the runtime's global one: the `ws` package on a
   * Node.js without a global `WebSocket`, or any class with the browser's WebSocket API.
   */
  WebSocket?: new (url: string, ...rest: any[]) => unknown;
}

/**
 * A message: `room` for room messages, `to` for private ones, neither for broadcasts.
 * `T` is what the application says its event's `data` holds (the hub does not check it):
 * a `Uint8Array` when bytes were published (`on<Uint8Array>("frame", (m) => m.data)`).
 */
export interface Message<T = Json> {
  room?: string;
  to?: string;
  /** The sender's user id, set by the hub. */
  from: string;
  event: string;
  data: T;
  /** When the hub accepted it, Unix milliseconds. */
  ts: number;
  /** Its position in its stream (the room's, or your inbox); absent for broadcasts to everyone. */
  offset?: number;
}

/** A page of a room's stored history. */
export interface HistoryPage {
  /** The room's epoch; absent when the room has no stored stream yet. */
  epoch?: string;
  /** The offset of the room's last message. */
  offset: number;
  messages: Message[];
}

/** One page of a room's members, from `membersPage()`. */
export interface MembersPage {
  /** Users in byte order. */
  members: string[];
  /** How many users the room holds in all. */
  memberCount: number;
  /** Pass it to the next `membersPage()` call; absent on the last page. */
  cursor?: string;
}

/** The user count of a large room, sent instead of a `presence` event per join and leave (at most once per the hub's `rooms.occupancy_interval_ms`). */
export interface Occupancy {
  room: string;
  count: number;
}

/** A user joined or left one of this client's rooms. */
export interface Presence {
  room: string;
  user: string;
  action: "join" | "leave";
}

export interface ConnectingEvent {
  /** 0 for the first attempt, then 1, 2, ...; reset once connected. */
  attempt: number;
}

export interface ConnectedEvent {
  session: string;
  user: string;
  heartbeatMs: number;
  /** After a reconnect: whether every private message sent meanwhile follows (false: some are lost). */
  inboxRecovered: boolean | null;
}

/** A room was joined: by `join()`, by the automatic rejoin after a reconnect, or by the server (a server-side join). */
export interface JoinedEvent {
  room: string;
  /** The users present, in byte order: all of them up to the hub's `rooms.join_ack_members` (100), else the first that many (`members()` reads all). Reset presence lists from this after a reconnect. */
  members: string[];
  /** How many users the room holds in all. */
  memberCount: number;
  /** True when the room is large: its joins and leaves come as `occupancy` counts, not `presence` events. */
  large: boolean;
  rejoin: boolean;
  /** For a rejoin: whether every message published meanwhile was replayed (false: reload the room). */
  recovered: boolean | null;
  /** True when the server put this client in the room (the backend's server-side join); it is rejoined after a reconnect like the client's own rooms. */
  byServer: boolean;
  /** What the application says about the room, when it is a managed room (created ahead with `POST /api/rooms` or in `rooms.default_rooms`). */
  info: RoomInfo | null;
}

/** A managed room's metadata. */
export interface RoomInfo {
  name?: string;
  description?: string;
  /** The application's own JSON. */
  data?: unknown;
}

/** The server took this client out of a room (a server-side leave); it is no longer rejoined. */
export interface LeftEvent {
  room: string;
}

/** A room the client is in (or, without `room`, its inbox) started over under a new epoch: the hub lost its history. The client goes on from the new position; reload what you show from your own source. */
export interface ResetEvent {
  room?: string;
}

export interface DisconnectedEvent {
  /** The close code, when the hub sent one (see docs/PROTOCOL.md). */
  code: number | null;
  reason: string;
  /** Whether the client will try again on its own. */
  willReconnect: boolean;
}

/**
 * What went wrong. Terminal kinds end the attempts and reject `connect()`: "refused" (the hub
 * refused the connection or keeps refusing the tokens), "unauthorized_or_unreachable" (every
 * attempt since `connect()` closed before opening: browsers hide whether the hub refused the
 * upgrade or cannot be reached), "no_websocket" (the runtime has none), "invalid_url" (the
 * runtime refuses the URL), "tls", and "gave_up" (attempts exhausted, or the hub said not to
 * come back). "transport" is a failed attempt the client retries.
 */
export type ErrorKind =
  | "server" | "timeout" | "queue_full" | "connection_lost" | "closed" | "gave_up"
  | "refused" | "unauthorized_or_unreachable" | "no_websocket" | "tls"
  | "transport" | "protocol" | "handler" | "invalid_name" | "invalid_url" | "invalid_options";

/** Every rejected Promise and every `error` event carries one of these. */
export interface SwitchboardError extends Error {
  name: "SwitchboardError";
  kind: ErrorKind;
  /** The hub's error code, for kind "server". */
  code?: number;
  /** What a throwing callback threw, for kind "handler". */
  cause?: unknown;
}

export type ConnectionState = "disconnected" | "connecting" | "connected" | "closed";

/** Lifecycle events and their payloads; any other name is an application event carrying a `Message`. */
export interface ClientEvents {
  connecting: ConnectingEvent;
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  joined: JoinedEvent;
  left: LeftEvent;
  reset: ResetEvent;
  error: SwitchboardError;
  presence: Presence;
  occupancy: Occupancy;
  /** Every message, whatever its event. */
  message: Message;
}

/** An application event's name: any string but the lifecycle events' (those have their own payloads). */
export type AppEvent<E extends string> = E extends keyof ClientEvents ? never : E;

export interface Client {
  /** Calls `callback` for a lifecycle event; returns a function that unsubscribes it. */
  on<K extends keyof ClientEvents>(event: K, callback: (payload: ClientEvents[K]) => void): () => void;
  /**
   * Calls `callback` for every message of an application event; returns a function that
   * unsubscribes it. `T` types the messages' `data`: `on<{ text: string }>("chat", (m) => m.data.text)`.
   */
  on<T = Json, E extends string = string>(event: AppEvent<E>, callback: (message: Message<T>) => void): () => void;
  /** Removes a callback registered with `on`; returns whether it was registered. */
  off<K extends keyof ClientEvents>(event: K, callback: (payload: ClientEvents[K]) => void): boolean;
  off<T = Json, E extends string = string>(event: AppEvent<E>, callback: (message: Message<T>) => void): boolean;
}
"#;
