//! Graceful stop, counted by hand. actix-server's own graceful stop races with itself:
//! it stops the accept thread, whose exit closes every worker's connection queue, and
//! only then tells the workers to stop; a worker that sees its queue closed first exits
//! at once and drops whatever it was serving (about one stop in six cut an in-flight
//! order creation). So paidonce counts requests in flight itself, from the moment one
//! reaches the app until its response body is gone, and asks the server to stop only
//! once none is left. Requests that arrive while draining get a 503 with
//! `Connection: close`.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

#[derive(Debug, Default)]
pub struct Drain {
    in_flight: AtomicUsize,
    draining: AtomicBool,
    idle: tokio::sync::Notify,
}

impl Drain {
    /// From now on new requests are answered 503.
    pub fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until no request is in flight, or `timeout` passed; true when drained.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let drained = async {
            loop {
                let idle = self.idle.notified();
                if self.in_flight() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(timeout, drained).await.is_ok()
    }
}

/// Held by a response body: the request is in flight until the body is dropped, which
/// the server does once it has sent it (or the client went away).
struct InFlight(web::Data<AppState>);

impl InFlight {
    fn enter(state: web::Data<AppState>) -> InFlight {
        state.drain.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let drain = &self.0.drain;
        if drain.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            drain.idle.notify_waiters();
        }
    }
}

/// A response body that keeps its request counted until it is dropped.
struct Counted {
    body: BoxBody,
    _in_flight: Option<InFlight>,
}

impl MessageBody for Counted {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

/// The middleware: counts every request, and refuses new ones once draining.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let in_flight = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .map(InFlight::enter);
    let draining = in_flight
        .as_ref()
        .is_some_and(|f| f.0.drain.draining.load(Ordering::SeqCst));
    let res = if draining {
        let refused = HttpResponse::ServiceUnavailable()
            .force_close()
            .insert_header(("Retry-After", "1"))
            .json(json!({"error": {
                "code": "shutting_down",
                "message": "this instance is shutting down; retry and another one will answer"
            }}));
        req.into_response(refused)
    } else {
        next.call(req).await?.map_into_boxed_body()
    };
    Ok(res.map_body(|_, body| Counted {
        body,
        _in_flight: in_flight,
    }))
}
