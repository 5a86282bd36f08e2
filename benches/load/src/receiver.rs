//! The merchant's receiver for the notification scenario: answers every POST with 200
//! as soon as its body is read, and counts them. Kept lean on purpose: in production the
//! receiver runs on the merchant's machines, so on this shared box every cycle it spends
//! is taken from the instance under test (a recording mock server cost more than the
//! dispatcher it was listening to).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub struct Receiver {
    pub url: String,
    received: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/merchant", listener.local_addr()?);
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            // The whole body, as a receiver that verifies the signature must.
                            let body = req.into_body().collect().await?.to_bytes();
                            if !body.is_empty() {
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Receiver {
            url,
            received,
            task,
        })
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
