//! Wake-ups between PostgreSQL nodes (`LISTEN`/`NOTIFY`): one connection per node listens on
//! the channels below and hands each notification to the subscribers of its channel.
//!
//! Notifications only shorten waits; nothing depends on them arriving. Every subscriber also
//! polls (jobs every second, the search feed every 250 ms), so a notification lost to a dropped
//! connection costs at most a poll period. After the listening connection is (re)established,
//! every subscriber is called once with an empty payload: something may have been missed while
//! it was down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// New jobs (payload: the job kind). Sent by `jobs::enqueue`.
pub const JOBS: &str = "engram_jobs";
/// New rows in the search feed (empty payload). Sent by the feed's triggers
/// (`schema.postgres.sql`).
pub const FEED: &str = "engram_feed";
const CHANNELS: &[&str] = &[JOBS, FEED];

type Subscriber = Arc<dyn Fn(&str) + Send + Sync>;

/// The subscribers of each channel, and the listening thread.
#[derive(Default)]
pub struct Listener {
    subscribers: Mutex<HashMap<&'static str, Vec<Subscriber>>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Listener {
    /// Calls `f` with the payload of every notification on `channel` (one of this module's).
    pub fn subscribe(&self, channel: &'static str, f: impl Fn(&str) + Send + Sync + 'static) {
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(channel)
            .or_default()
            .push(Arc::new(f));
    }

    fn deliver(&self, channel: &str, payload: &str) {
        let subs: Vec<Subscriber> = self
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .cloned()
            .unwrap_or_default();
        for s in subs {
            s(payload);
        }
    }

    fn deliver_all(&self) {
        for channel in CHANNELS {
            self.deliver(channel, "");
        }
    }

    /// Starts listening on `url` (a thread of its own; reconnects after a failure).
    pub fn start(self: &Arc<Self>, url: &str) -> std::io::Result<()> {
        let me = Arc::downgrade(self);
        let (url, stop) = (url.to_string(), self.stop.clone());
        let handle = std::thread::Builder::new()
            .name("engram-listen".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the PostgreSQL listener");
                        return;
                    }
                };
                rt.block_on(listen_loop(url, me, stop));
            })?;
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(())
    }

    /// Stops the listening thread and waits for it.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// How often the listening thread looks at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(200);

async fn listen_loop(url: String, me: std::sync::Weak<Listener>, stop: Arc<AtomicBool>) {
    let mut failures = 0u32;
    while !stop.load(Ordering::SeqCst) {
        let (client, mut connection) = match tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures % 60 == 0 {
                    tracing::warn!(error = %e, "the PostgreSQL listener cannot connect; retrying");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // The connection delivers notifications only while it is polled: a task polls it and
        // forwards them here.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            loop {
                let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                match message {
                    Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                        let _ = tx.send((n.channel().to_string(), n.payload().to_string()));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "the PostgreSQL listener's connection failed");
                        break;
                    }
                    None => break,
                }
            }
        });
        let listen = CHANNELS
            .iter()
            .map(|c| format!("LISTEN {c};"))
            .collect::<String>();
        if let Err(e) = client.batch_execute(&listen).await {
            tracing::warn!(error = %e, "the PostgreSQL listener cannot LISTEN; retrying");
            driver.abort();
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        failures = 0;
        match me.upgrade() {
            Some(l) => l.deliver_all(),
            None => return,
        }
        loop {
            if stop.load(Ordering::SeqCst) {
                driver.abort();
                return;
            }
            match tokio::time::timeout(STOP_CHECK, rx.recv()).await {
                Ok(Some((channel, payload))) => match me.upgrade() {
                    Some(l) => l.deliver(&channel, &payload),
                    None => {
                        driver.abort();
                        return;
                    }
                },
                // The connection ended: connect again.
                Ok(None) => break,
                Err(_) => {}
            }
        }
        drop(client);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
