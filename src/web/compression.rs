//! Compression for what a browser downloads (pages, and the SVG favicon): gzip when
//! the client accepts it. Everything else (the webhook's answer above all, the order
//! poll and the rest of the JSON API, metrics) is marked `Content-Encoding: identity`
//! before actix's `Compress` sees it, which leaves such a response alone: small JSON
//! gains nothing from gzip but the CPU it costs on the busiest routes.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;

const COMPRESSIBLE: [&str; 4] = [
    "text/html",
    "text/css",
    "application/javascript",
    "image/svg+xml",
];

pub async fn only_pages(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let compressible = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| COMPRESSIBLE.iter().any(|c| t.starts_with(c)));
    if !compressible && !res.headers().contains_key(header::CONTENT_ENCODING) {
        res.headers_mut().insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    Ok(res)
}
