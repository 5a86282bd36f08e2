//! The shopper's first two pages (SPEC §7): checkout, which stores a pending order, and
//! pay, which mounts Stripe's Payment Element for it (or hands over to the sandbox).
//! The return page is `status_page`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use uuid::Uuid;

use crate::config::Shop;
use crate::db::{self, orders::Order};
use crate::domain::order::OrderStatus;
use crate::error::{AppError, PageError};
use crate::orders::{create, view};
use crate::state::AppState;
use crate::web::{csrf, html};

struct PackView {
    id: String,
    name: String,
    credits: i64,
    price: String,
    checked: bool,
}

#[derive(Template)]
#[template(path = "checkout.html")]
struct CheckoutPage {
    shop: Shop,
    packs: Vec<PackView>,
    email: String,
    email_error: Option<String>,
    error: Option<String>,
    csrf_token: String,
    sandbox: bool,
}

#[derive(Default)]
struct CheckoutInput {
    email: String,
    pack_id: String,
}

pub async fn get_checkout(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    Ok(checkout_page(&state, &CheckoutInput::default(), None, StatusCode::OK).await?)
}

pub async fn post_checkout(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    body: Result<web::Bytes, actix_web::Error>,
) -> Result<HttpResponse, PageError> {
    let state: &AppState = &state;
    let form = html::verified_form(state, body)?;
    crate::web::client::admit_order(state, &req)?;
    let input = CheckoutInput {
        email: form.get("email").cloned().unwrap_or_default(),
        pack_id: form.get("pack_id").cloned().unwrap_or_default(),
    };
    let created = match create::validate(&input.email, &input.pack_id) {
        Ok(request) => create::create_order(state, &request, None, None).await,
        Err(e) => Err(e),
    };
    match created {
        Ok((order, _email)) => Ok(html::see_other(&format!("/orders/{}/pay", order.id))),
        // The shopper can fix these (or retry later): show the form again with their input.
        Err(
            e @ (AppError::Client { .. } | AppError::Provider(_) | AppError::ProviderRefused(_)),
        ) => {
            if let AppError::Provider(source) | AppError::ProviderRefused(source) = &e {
                tracing::warn!(parent: None, error = %source, "checkout: provider unavailable");
            }
            let status = actix_web::ResponseError::status_code(&e);
            Ok(checkout_page(state, &input, Some(e), status).await?)
        }
        Err(e) => Err(e.into()),
    }
}

async fn checkout_page(
    state: &AppState,
    input: &CheckoutInput,
    error: Option<AppError>,
    status: StatusCode,
) -> Result<HttpResponse, AppError> {
    // A bad address is shown at its field, anything else above the form.
    let (email_error, error) = match error {
        Some(e) if e.code() == "invalid_email" => (Some(e.to_string()), None),
        Some(e) => (None, Some(e.to_string())),
        None => (None, None),
    };
    let mut conn = state.db.get().await?;
    let packs = db::packs::all(&mut conn).await?;
    drop(conn);
    let selected = if packs.iter().any(|p| p.id == input.pack_id) {
        input.pack_id.as_str()
    } else {
        ""
    };
    let packs = packs
        .into_iter()
        .enumerate()
        .map(|(i, p)| PackView {
            checked: if selected.is_empty() {
                i == 0
            } else {
                p.id == selected
            },
            price: html::money(p.amount, &p.currency),
            id: p.id,
            name: p.name,
            credits: p.credits,
        })
        .collect();
    let page = CheckoutPage {
        shop: state.config.shop.clone(),
        packs,
        email: input.email.clone(),
        email_error,
        error,
        csrf_token: csrf::issue(&state.csrf_key, html::now_secs()),
        sandbox: state.config.is_sandbox(),
    };
    html::render(status, &page)
}

#[derive(Template)]
#[template(path = "pay.html")]
struct PayPage {
    shop: Shop,
    order_id: Uuid,
    amount: String,
    credits: i64,
    /// None: the shop has not configured STRIPE_PUBLISHABLE_KEY, so no card form.
    publishable_key: Option<String>,
    client_secret: String,
    return_url: String,
    status_url: String,
}

#[derive(Template)]
#[template(path = "pay_closed.html")]
struct PayClosedPage {
    shop: Shop,
    status: &'static str,
    status_url: String,
}

pub async fn get_pay_page(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let state: &AppState = &state;
    let order = find_order(state, &path).await?;
    let status_url = format!("/orders/{}/status", order.id);
    // Processing means a payment is already in flight; failed may be paid again (SPEC §3).
    if !matches!(order.status, OrderStatus::Pending | OrderStatus::Failed) {
        return html::render(
            StatusCode::OK,
            &PayClosedPage {
                shop: state.config.shop.clone(),
                status: order.status.as_str(),
                status_url,
            },
        );
    }
    let order = match order.payment_intent_id {
        Some(_) => order,
        // Creation was interrupted before the provider answered: finish it, same key.
        None => create::attach_intent(state, order, None).await?,
    };
    let (Some(pi), Some(client_secret)) =
        (order.payment_intent_id.clone(), order.client_secret.clone())
    else {
        return Err(AppError::Internal(anyhow::anyhow!(
            "order {} has no PaymentIntent after attaching one",
            order.id
        ))
        .into());
    };
    let Some(stripe) = &state.config.stripe else {
        return Ok(html::see_other(&format!("/sandbox/pay/{pi}")));
    };
    let publishable_key = stripe.publishable_key.clone();
    if publishable_key.is_none() {
        // The order and its PaymentIntent stand; only the card form cannot load.
        tracing::warn!(order_id = %order.id, "STRIPE_PUBLISHABLE_KEY is not set: the pay page shows no card form");
    }
    let page = PayPage {
        shop: state.config.shop.clone(),
        order_id: order.id,
        amount: html::money(order.amount, &order.currency),
        credits: order.credits,
        publishable_key,
        client_secret,
        return_url: view::page_url(&state.public_base_url, order.id, "status"),
        status_url,
    };
    html::render(StatusCode::OK, &page)
}

async fn find_order(state: &AppState, id: &str) -> Result<Order, AppError> {
    let id = Uuid::parse_str(id).map_err(|_| AppError::NotFound("order"))?;
    crate::orders::lookup(state, id).await
}
