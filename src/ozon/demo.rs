//! `euraflow serve --dev --demo` (`scripts/dev-server --demo`): the seller's pages with data in
//! them, without an Ozon account.
//!
//! A fake Ozon Seller API ([`super::fake`]) runs inside the development server on a loopback
//! port, the Ozon base URL points at it, and a seller account `demo` (a main account, password
//! generated once into `<state dir>/demo-password`) owns the fake's shops. Their products and
//! the last 30 days of postings are synced through the same jobs as a real shop's, so the
//! 商品列表, 订单管理 and 店铺概览 pages show real mirrors of the fake's data. While the server
//! runs, a new order arrives in one of the shops every [`NEW_ORDER_EVERY`] and the fake sends
//! Ozon's `TYPE_NEW_POSTING` push for it to the shop's push URL on the loopback listener (each
//! demo shop gets a fresh push secret at start), so the push job re-reads it and the web app shows
//! the new-order toast.
//!
//! A fake exchange-rate provider ([`crate::exchange_rates::fake`]) runs beside it on loopback,
//! the provider base URL points at it, and (unless a configuration exists already) the demo
//! configures its key and refreshes once, so the pages and calculators show a CNY↔RUB rate.
//!
//! Development only: `--demo` is refused without `--dev`, and nothing here runs otherwise.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::fake::push::{self, Pusher};
use super::fake::{FakeConfig, FakeOzon};
use super::product_sync::Mode;
use super::shops::{self, NewShop};
use super::{postings, products};
use crate::auth::accounts::{self, NewAccount};
use crate::auth::actor::{Actor, Origin, UserActor, Who};
use crate::auth::roles::Role;
use crate::auth::values::{NewPassword, Username};
use crate::auth::{bootstrap, users};
use crate::config::{Config, write_private_file};
use crate::domain::Work;
use crate::exchange_rates;
use crate::exchange_rates::fake::FakeRates;
use crate::lifecycle::Lifecycle;
use crate::state::AppState;

/// The points the demo seller starts with.
const DEMO_POINTS: i64 = 1_000;

/// The demo seller's login.
pub const DEMO_USER: &str = "demo";
/// Where its generated password is written (under the state directory).
pub const PASSWORD_FILE: &str = "demo-password";
/// How often a new order arrives in a demo shop.
pub const NEW_ORDER_EVERY: Duration = Duration::from_secs(120);

/// Two shops, a catalogue and a month of orders each: enough to fill every page and chart,
/// small enough to sync in seconds.
fn demo_data() -> FakeConfig {
    FakeConfig {
        shops: 2,
        products: 300,
        postings: 600,
        call_log_capacity: 0,
    }
}

/// The key the demo's fake exchange-rate provider accepts.
pub const DEMO_RATES_KEY: &str = "demo-exchange-rate-key";

/// The fake Ozon of a demo server, and the shops it serves; the fake exchange-rate provider.
pub struct Demo {
    fake: FakeOzon,
    rates: FakeRates,
}

impl Demo {
    /// Start the fake Ozon and point `config`'s Ozon base URL at it. Call before anything is
    /// built from the configuration.
    pub async fn start(config: &mut Config) -> anyhow::Result<Demo> {
        let fake = FakeOzon::start(demo_data())
            .await
            .context("starting the demo's fake Ozon Seller API on 127.0.0.1")?;
        config.business.ozon_api_base_url = fake.base_url();
        tracing::info!(
            ozon_api_base_url = %fake.base_url(),
            "demo: a fake Ozon Seller API serves the demo shops"
        );
        let rates = FakeRates::start(DEMO_RATES_KEY)
            .await
            .context("starting the demo's fake exchange-rate provider on 127.0.0.1")?;
        config.business.exchange_rate_api_base_url = rates.base_url();
        tracing::info!(
            exchange_rate_api_base_url = %rates.base_url(),
            "demo: a fake exchange-rate provider serves CNY↔RUB"
        );
        Ok(Demo { fake, rates })
    }

    /// Make sure the demo seller and its shops exist, start their first syncs, and keep new
    /// orders coming while the server runs. Failures are logged: the server runs without a
    /// demo rather than not at all.
    pub async fn seed(&self, state: &AppState, lifecycle: &Lifecycle, http_addr: SocketAddr) {
        if let Err(e) = self.seed_rates(state).await {
            tracing::error!(
                error = format!("{e:#}"),
                "demo: could not configure the fake exchange-rate provider"
            );
        }
        match self.seed_once(state).await {
            Ok(Seeded {
                password_file,
                shop_ids,
            }) => {
                match password_file {
                    Some(path) => tracing::warn!(
                        path = %path.display(),
                        "demo: created the seller '{DEMO_USER}'; its password is in {}",
                        path.display()
                    ),
                    None => tracing::info!(
                        "demo: log in as '{DEMO_USER}' (password in {})",
                        state.config().state_dir.join(PASSWORD_FILE).display()
                    ),
                }
                self.keep_orders_coming(state.clone(), lifecycle, shop_ids, http_addr);
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "demo: could not prepare the demo seller and shops; the server runs without them"
            ),
        }
    }

    /// Configure the fake provider's key unless a configuration exists, and refresh once.
    async fn seed_rates(&self, state: &AppState) -> anyhow::Result<()> {
        let system = Actor::system("demo");
        let mut client = state.db().get().await?;
        if exchange_rates::service::load_config(&client)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .is_none()
        {
            let mut work = Work::begin(&mut client).await?;
            let body = exchange_rates::service::ConfigBody {
                api_key: Some(DEMO_RATES_KEY.into()),
                ..Default::default()
            };
            exchange_rates::service::configure(&mut work, &system, state.exchange_rates(), body)
                .await
                .map_err(|e| anyhow::anyhow!("configuring the demo's exchange-rate key: {e}"))?;
            let _ = work.commit().await?;
        }
        let done = exchange_rates::service::refresh(&mut client, state.exchange_rates(), &system)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(
            outcome = %done.to_json(),
            fake_provider_calls = self.rates.handle().calls(),
            "demo: exchange rates refreshed"
        );
        Ok(())
    }

    async fn seed_once(&self, state: &AppState) -> anyhow::Result<Seeded> {
        let (user_id, password_file) = ensure_seller(state).await?;
        let seller = seller_actor(user_id);
        let mut shop_ids = Vec::new();
        for (n, shop) in self.fake.handle().shops().into_iter().enumerate() {
            let mut client = state.db().get().await?;
            let mut work = Work::begin(&mut client).await?;
            let existing: Option<i64> = work
                .tx()
                .query_opt(
                    "SELECT id FROM ozon_shops WHERE client_id = $1",
                    &[&shop.client_id],
                )
                .await
                .context("looking up the demo shops")?
                .map(|r| r.get(0));
            let shop_id = match existing {
                Some(id) => id,
                None => {
                    let new = NewShop {
                        shop_name: format!("Demo shop {}", n + 1),
                        shop_name_cn: Some(format!("演示店铺 {}", n + 1)),
                        client_id: shop.client_id.clone(),
                        api_key: shop.api_key.clone(),
                        platform: "ozon".into(),
                        config: None,
                    };
                    shops::create(&mut work, &seller, state.ozon(), new)
                        .await
                        .map_err(|e| anyhow::anyhow!("creating demo shop {}: {e}", n + 1))?
                        .id
                }
            };
            // Every start: the fake's data is regenerated around "now", so a full sync brings
            // the mirror up to date with it.
            products::start_sync(&mut work, &seller, shop_id, Mode::Full)
                .await
                .map_err(|e| anyhow::anyhow!("starting the demo shop's product sync: {e}"))?;
            postings::start_sync(&mut work, &seller, shop_id, Mode::Full)
                .await
                .map_err(|e| anyhow::anyhow!("starting the demo shop's order sync: {e}"))?;
            let secret = super::webhook::set_secret(work.tx(), shop_id)
                .await
                .map_err(|e| anyhow::anyhow!("giving the demo shop a push URL: {e}"))?;
            let effects = work.commit().await?;
            state.auth().apply(effects).await;
            shop_ids.push((shop.index, shop_id, secret));
        }
        Ok(Seeded {
            password_file,
            shop_ids,
        })
    }

    /// A new order in the next shop every [`NEW_ORDER_EVERY`], then Ozon's push for it to the
    /// shop's push URL on the loopback listener (an incremental sync if the push fails).
    fn keep_orders_coming(
        &self,
        state: AppState,
        lifecycle: &Lifecycle,
        shop_ids: Vec<(usize, i64, String)>,
        http_addr: SocketAddr,
    ) {
        if shop_ids.is_empty() {
            return;
        }
        let fake = self.fake.handle();
        let stop = lifecycle.shutdown_token();
        lifecycle.spawn(crate::lifecycle::TaskName::Demo, async move {
            let mut tick = tokio::time::interval(NEW_ORDER_EVERY);
            tick.tick().await;
            for round in 0usize.. {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let (index, shop_id, secret) = &shop_ids[round % shop_ids.len()];
                let (index, shop_id) = (*index, *shop_id);
                let numbers = fake.add_postings(index, 1);
                let url = super::webhook::push_url(&format!("http://{http_addr}"), shop_id, secret);
                if push_new_orders(&fake, index, &numbers, &url).await {
                    tracing::info!(shop_id, postings = ?numbers, "demo: a new order arrived; Ozon's push for it was sent");
                } else if let Err(e) = sync_orders(&state, shop_id).await {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "demo: could not start the order sync"
                    );
                } else {
                    tracing::info!(shop_id, postings = ?numbers, "demo: a new order arrived");
                }
            }
        });
    }
}

struct Seeded {
    password_file: Option<PathBuf>,
    /// (fake shop index, our shop id, its push secret)
    shop_ids: Vec<(usize, i64, String)>,
}

/// Send `TYPE_NEW_POSTING` for each new posting; false (logged) when a push was not accepted.
async fn push_new_orders(
    fake: &super::fake::FakeHandle,
    index: usize,
    numbers: &[String],
    url: &str,
) -> bool {
    let pusher = match Pusher::new(true) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "demo: cannot build the push sender");
            return false;
        }
    };
    for number in numbers {
        let Some(body) = push::new_posting(fake, index, number) else {
            return false;
        };
        match pusher.send(url, &body).await {
            Ok(d) if d.status == 200 => {}
            Ok(d) => {
                tracing::warn!(status = d.status, body = %d.body, "demo: the push was refused");
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e, "demo: the push was not delivered");
                return false;
            }
        }
    }
    true
}

async fn sync_orders(state: &AppState, shop_id: i64) -> anyhow::Result<()> {
    let mut client = state.db().get().await?;
    let mut work = Work::begin(&mut client).await?;
    let user_id: i64 = work
        .tx()
        .query_one(
            "SELECT owner_user_id FROM ozon_shops WHERE id = $1",
            &[&shop_id],
        )
        .await
        .context("reading the demo shop's owner")?
        .get(0);
    postings::start_sync(
        &mut work,
        &seller_actor(user_id),
        shop_id,
        Mode::Incremental,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let effects = work.commit().await?;
    state.auth().apply(effects).await;
    Ok(())
}

/// The demo seller's id, creating it (and its password file) the first time.
async fn ensure_seller(state: &AppState) -> anyhow::Result<(i64, Option<PathBuf>)> {
    let mut client = state.db().get().await?;
    if let Some(user) = users::by_username(&client, DEMO_USER).await? {
        if user.user.role != Role::MainAccount {
            anyhow::bail!(
                "a user '{DEMO_USER}' exists but is not a main account; rename it or start without --demo"
            );
        }
        return Ok((user.user.id, None));
    }
    let password = bootstrap::random_password();
    let new = NewAccount::basic(
        Username::parse(DEMO_USER).map_err(anyhow::Error::msg)?,
        NewPassword::parse(&password).map_err(anyhow::Error::msg)?,
        Role::MainAccount,
    );
    let mut work = Work::begin(&mut client).await?;
    let id = accounts::create(
        &mut work,
        &Actor::system("demo"),
        &state.auth().passwords,
        new,
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating the demo seller: {e}"))?;
    // Points to spend, so the 额度中心 page and the balance shown after login are not all zero.
    // The idempotency key makes the top-up once per seller even if this ran twice.
    crate::credit::recharge(
        &mut work,
        &Actor::system("demo"),
        &crate::credit::Recharge {
            user_id: id,
            amount: rust_decimal::Decimal::from(DEMO_POINTS),
            payment_method: "manual".into(),
            payment_amount_cny: None,
            payment_order_no: None,
            notes: Some("演示账号的初始积分".into()),
            idempotency_key: Some(format!("demo-seller-{id}")),
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("giving the demo seller its points: {e}"))?;
    let path = state.config().state_dir.join(PASSWORD_FILE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_private_file(&path, format!("{password}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    // A brand-new user: nothing cached to invalidate.
    let _ = work.commit().await?;
    Ok((id, Some(path)))
}

/// The demo seller as the actor of the shop and sync services, as if logged in.
fn seller_actor(user_id: i64) -> Actor {
    Actor {
        who: Who::User(UserActor {
            id: user_id,
            username: DEMO_USER.into(),
            role: Role::MainAccount,
            parent_user_id: None,
            expires_at: None,
            via_api_key: false,
            shop_ids: None,
            cloned_by: None,
        }),
        origin: Origin {
            user_agent: Some("euraflow demo".into()),
            ..Origin::default()
        },
    }
}
