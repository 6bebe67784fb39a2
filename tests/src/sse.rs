//! [`SseReader`]: a Server-Sent Events client over a real HTTP response,
//! for the SSE tests on one node and across nodes.

use serde_json::Value;

use crate::{TIMEOUT, TestServer};

/// One parsed SSE event.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    /// Its `id:` field.
    pub id: Option<String>,
    /// Its `event:` field.
    pub event: Option<String>,
    /// Its `data:` lines, joined.
    pub data: String,
}

/// Reads SSE events off a streaming response.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// Opens `/sse?{query}` on `server`, resuming after `last_event_id`.
    pub async fn open(server: &TestServer, query: &str, last_event_id: Option<&str>) -> SseReader {
        SseReader::open_url(&server.http(&format!("/sse?{query}")), last_event_id).await
    }

    /// Opens an SSE stream at `url`.
    pub async fn open_url(url: &str, last_event_id: Option<&str>) -> SseReader {
        let mut request = crate::http().get(url);
        // No overall timeout on a stream; every read below has its own.
        request = request.timeout(std::time::Duration::from_secs(3600));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        SseReader { response, buffer: String::new() }
    }

    /// The next event (keep-alive comments skipped); fails after [`TIMEOUT`].
    pub async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ").or_else(|| line.strip_prefix("id:"))
                    {
                        event.id = Some(v.to_owned());
                    } else if let Some(v) =
                        line.strip_prefix("event: ").or_else(|| line.strip_prefix("event:"))
                    {
                        event.event = Some(v.to_owned());
                    } else if let Some(v) =
                        line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:"))
                    {
                        data.push(v.to_owned());
                    }
                }
                if data.is_empty() && event.id.is_none() && event.event.is_none() {
                    continue; // a keep-alive comment
                }
                event.data = data.join("\n");
                return event;
            }
            let chunk = tokio::time::timeout(TIMEOUT, self.response.chunk())
                .await
                .expect("an SSE chunk within the timeout")
                .unwrap()
                .expect("the stream is open");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next message event's `data` field of the message.
    pub async fn next_message(&mut self) -> (Value, String) {
        loop {
            let event = self.next().await;
            if event.event.is_none() {
                let frame: Value = serde_json::from_str(&event.data).unwrap();
                return (frame["data"].clone(), event.id.expect("messages carry an id"));
            }
        }
    }
}
