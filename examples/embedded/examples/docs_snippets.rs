//! The Rust blocks of docs/EMBEDDING.md and docs/HOOKS.md, compiled: each
//! `ANCHOR` region is one of those blocks word for word (tests/tests/docs.rs
//! compares them), and the functions around them stand in for an
//! application's own code. `cargo run -p switchboard-example-embedded
//! --example docs_snippets` serves the hooked hub of the last one; the
//! others are compiled, not run.

use switchboard_server::ServerError;

/// Stands in for an application's accounts.
struct Account {
    id: String,
    role: &'static str,
}

/// Stands in for an application's session lookup.
async fn account_of(cookie: Option<&axum::http::HeaderValue>) -> Option<Account> {
    cookie.map(|_| Account { id: "alice".to_owned(), role: "member" })
}

/// Stands in for an application's store.
async fn save_to_my_database(_who: &switchboard_server::Identity, _room: &str, _text: &str) {}

/// Stands in for an application's rules.
fn censor(text: &str) -> String {
    text.replace("darn", "****")
}

/// docs/EMBEDDING.md: nesting the hub's router.
#[allow(dead_code, reason = "compiled for the docs, not run")]
fn nest() -> Result<axum::Router, Box<dyn std::error::Error>> {
    // ANCHOR: nest
    let state = switchboard_server::AppState::new(switchboard_server::Config::default())?;
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "my app" }))
        .nest("/realtime", switchboard_server::router(state.clone())); // ws at /realtime/ws
    // on shutdown: state.shutdown(); state.drain().await;
    // ANCHOR_END: nest
    Ok(app)
}

/// docs/EMBEDDING.md: the in-process API.
#[allow(dead_code, reason = "compiled for the docs, not run")]
async fn service(
    state: switchboard_server::AppState,
    sender_session: &str,
) -> Result<(), ServerError> {
    use serde_json::json;
    use switchboard_server::CloseCode;
    // ANCHOR: service
    let sent = state.send("alice", "invoice", json!({"id": 42})).await?; // through her inbox
    state.publish("general", "notice", json!("maintenance at 5")).await?; // part of the room's stream
    state.broadcast("reload", json!(null)).await?; // every connection
    state.join("alice", "project-7").await?; // her connections join it (a `joined` frame; SDKs rejoin it)
    state.publish_except("general", "typing", json!(null), Some(sender_session)).await?; // all but one session
    state.publish("files", "thumbnail", vec![0x89u8, b'P', b'N', b'G']).await?; // bytes: binary to SDKs
    let page = state.connections(Some("alice"), None, 100).await?; // her sessions on every node
    state.disconnect("mallory", CloseCode::KICKED, "banned").await?;
    let online = state.online_users().await?;
    let members = state.room_members("general", None, 100).await?;
    // ANCHOR_END: service
    println!("{sent:?} {page:?} {online:?} {members:?}");
    Ok(())
}

/// docs/HOOKS.md: hooks that decide who connects and what is published.
fn hooks() -> Result<axum::Router, Box<dyn std::error::Error>> {
    // ANCHOR: hooks
    use serde_json::{Value, json};
    use switchboard_server::hooks::{
        ConnectDecision, ConnectRequest, HookFuture, Hooks, MessageDecision,
    };
    use switchboard_server::{AppState, Config, Encoding, Identity};

    struct Chat;

    impl Hooks for Chat {
        fn connect<'a>(
            &'a self,
            request: &'a ConnectRequest<'a>,
        ) -> HookFuture<'a, ConnectDecision> {
            Box::pin(async move {
                // The session cookie says who this is; the URL may name a workspace.
                let Some(account) = account_of(request.headers.get("cookie")).await else {
                    return ConnectDecision::refuse("log in first");
                };
                let workspace = request.query.iter().find(|(name, _)| name == "workspace");
                ConnectDecision::Allow {
                    rooms: vec![format!("user:{}", account.id)],
                    user: Some(account.id),
                    meta: Some(
                        json!({"role": account.role, "workspace": workspace.map(|(_, w)| w)}),
                    ),
                }
            })
        }

        fn publish<'a>(
            &'a self,
            who: &'a Identity,
            room: &'a str,
            _event: &'a str,
            data: &'a Value,
            encoding: Option<Encoding>,
        ) -> HookFuture<'a, MessageDecision> {
            Box::pin(async move {
                // Bytes (`encoding` is `Some`) are base64 text here: not chat.
                match data.as_str().filter(|_| encoding.is_none()) {
                    Some(text) if text.len() > 2000 => {
                        MessageDecision::refuse("at most 2000 characters")
                    }
                    Some(text) => {
                        save_to_my_database(who, room, text).await;
                        MessageDecision::Replace(json!(censor(text)))
                    }
                    None => MessageDecision::Allow,
                }
            })
        }
    }

    let state = AppState::new(Config::default())?;
    state.set_hooks(Chat);
    let app = axum::Router::new().nest("/realtime", switchboard_server::router(state.clone()));
    // ANCHOR_END: hooks
    Ok(app)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let app = hooks()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    axum::serve(listener, app).await?;
    Ok(())
}
