//! The slider captcha the existing web app shows on its login page (it keeps the login button
//! disabled until `GET /auth/captcha` answers). Same protocol as the original: a 280×160
//! background with a puzzle-shaped hole, the piece as a separate image, and `y` for placing it;
//! the client reports the `x` it slid to. Stricter than the original: a captcha allows three
//! attempts, not unlimited guesses in 120 s, and the token it yields is single-use.
//!
//! Whether login *requires* the token is `EF__LOGIN_CAPTCHA` (off by default: a captcha adds
//! little against a rate-limited, locking-out login, and scripts log in without one).

use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::domain::{Checks, DomainError};
use crate::redis::Redis;

pub const WIDTH: u32 = 280;
pub const HEIGHT: u32 = 160;
/// The square body of the piece, plus room for the knobs on top and right.
pub const PIECE: u32 = 50;
pub const KNOB: u32 = 8;
pub const TOLERANCE_PX: i64 = 10;
pub const MIN_DURATION_MS: i64 = 200;
pub const MAX_ATTEMPTS: u32 = 3;
pub const CAPTCHA_TTL_S: u64 = 120;
pub const TOKEN_TTL_S: u64 = 300;

/// A generated challenge: where the piece belongs and the two images.
pub struct Challenge {
    pub x: u32,
    /// Top of the piece image (the knob row included).
    pub y: u32,
    pub background_png: Vec<u8>,
    pub piece_png: Vec<u8>,
}

fn rand_u32(max: u32) -> u32 {
    let mut b = [0u8; 4];
    rand::fill(&mut b);
    u32::from_le_bytes(b) % max.max(1)
}

/// Is (px, py), relative to the piece image's top-left, inside the puzzle shape?
fn in_shape(px: i64, py: i64) -> bool {
    let k = KNOB as i64;
    let s = PIECE as i64;
    // Body: [0, s) × [k, k + s)
    let body = (0..s).contains(&px) && (k..k + s).contains(&py);
    // Knob on top, centred.
    let (tx, ty) = (px - s / 2, py - k);
    let top = tx * tx + ty * ty <= k * k;
    // Knob on the right, centred.
    let (rx, ry) = (px - s, py - (k + s / 2));
    let right = rx * rx + ry * ry <= k * k;
    body || top || right
}

fn on_edge(px: i64, py: i64) -> bool {
    in_shape(px, py)
        && [(-1, 0), (1, 0), (0, -1), (0, 1)]
            .iter()
            .any(|(dx, dy)| !in_shape(px + dx, py + dy))
}

pub fn generate() -> anyhow::Result<Challenge> {
    let piece_w = PIECE + KNOB;
    let piece_h = PIECE + KNOB;
    // The original's ranges: piece x in [86, 204], y in [26, 84].
    let x = 86 + rand_u32(204 - 86 + 1);
    let y = 26 + rand_u32(84 - 26 + 1) - KNOB;

    // Background: a diagonal gradient between two random colours with soft blobs.
    let c1 = [
        rand_u32(200) as f32 + 30.0,
        rand_u32(200) as f32 + 30.0,
        rand_u32(200) as f32 + 30.0,
    ];
    let c2 = [
        rand_u32(200) as f32 + 30.0,
        rand_u32(200) as f32 + 30.0,
        rand_u32(200) as f32 + 30.0,
    ];
    let blobs: Vec<(f32, f32, f32, f32)> = (0..6)
        .map(|_| {
            (
                rand_u32(WIDTH) as f32,
                rand_u32(HEIGHT) as f32,
                20.0 + rand_u32(40) as f32,
                (rand_u32(100) as f32 / 100.0) * 0.5 - 0.25,
            )
        })
        .collect();
    let mut bg = vec![0u8; (WIDTH * HEIGHT * 4) as usize];
    for py in 0..HEIGHT {
        for px in 0..WIDTH {
            let t = (px + py) as f32 / (WIDTH + HEIGHT) as f32;
            let mut light = 0.0f32;
            for (bx, by, r, strength) in &blobs {
                let d2 = (px as f32 - bx).powi(2) + (py as f32 - by).powi(2);
                light += strength * (-d2 / (r * r)).exp();
            }
            let i = ((py * WIDTH + px) * 4) as usize;
            for ch in 0..3 {
                let v = c1[ch] * (1.0 - t) + c2[ch] * t;
                bg[i + ch] = (v * (1.0 + light)).clamp(0.0, 255.0) as u8;
            }
            bg[i + 3] = 255;
        }
    }

    // The piece: the background's pixels inside the shape, outlined; transparent elsewhere.
    let mut piece = vec![0u8; (piece_w * piece_h * 4) as usize];
    for py in 0..piece_h {
        for px in 0..piece_w {
            let (sx, sy) = (px as i64, py as i64);
            if !in_shape(sx, sy) {
                continue;
            }
            let src = (((y + py) * WIDTH + (x + px)) * 4) as usize;
            let dst = ((py * piece_w + px) * 4) as usize;
            if on_edge(sx, sy) {
                piece[dst..dst + 4].copy_from_slice(&[255, 255, 255, 255]);
            } else {
                piece[dst..dst + 4].copy_from_slice(&bg[src..src + 4]);
            }
        }
    }
    // The hole: darkened, with a light outline.
    for py in 0..piece_h {
        for px in 0..piece_w {
            let (sx, sy) = (px as i64, py as i64);
            if !in_shape(sx, sy) {
                continue;
            }
            let i = (((y + py) * WIDTH + (x + px)) * 4) as usize;
            if on_edge(sx, sy) {
                bg[i..i + 3].copy_from_slice(&[235, 235, 235]);
            } else {
                for ch in 0..3 {
                    bg[i + ch] = (bg[i + ch] as f32 * 0.45) as u8;
                }
            }
        }
    }
    Ok(Challenge {
        x,
        y,
        background_png: encode_png(&bg, WIDTH, HEIGHT)?,
        piece_png: encode_png(&piece, piece_w, piece_h)?,
    })
}

fn encode_png(rgba: &[u8], w: u32, h: u32) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header()?;
    writer.write_image_data(rgba)?;
    writer.finish()?;
    Ok(out)
}

pub fn data_url(png: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A single-use token proving a solved captcha (32 random bytes, URL-safe).
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

// ---- the service: challenges and tokens in Redis --------------------------------------------

fn unavailable() -> DomainError {
    DomainError::Unavailable {
        code: "CAPTCHA_UNAVAILABLE",
        message: "The captcha is unavailable right now; try again shortly".into(),
        retry_after_s: 5,
    }
}

/// A new challenge, stored for [`CAPTCHA_TTL_S`]: `{captcha_id, bg_url, puzzle_url, y}`.
pub async fn challenge(redis: &Redis) -> Result<Value, DomainError> {
    let c = tokio::task::spawn_blocking(generate)
        .await
        .map_err(|e| anyhow::anyhow!("captcha task: {e}"))??;
    let id = new_id();
    redis
        .query::<()>(
            redis::cmd("SET")
                .arg(redis.key(&format!("captcha:{id}")))
                .arg(c.x)
                .arg("EX")
                .arg(CAPTCHA_TTL_S),
        )
        .await
        .map_err(|_| unavailable())?;
    Ok(json!({
        "captcha_id": id,
        "bg_url": data_url(&c.background_png),
        "puzzle_url": data_url(&c.piece_png),
        "y": c.y,
    }))
}

/// What the client reports after sliding.
#[derive(Debug, Deserialize)]
pub struct Answer {
    pub captcha_id: String,
    pub x: f64,
    #[serde(default)]
    pub duration: Option<f64>,
    #[serde(default)]
    pub trail: Option<Vec<Vec<f64>>>,
}

/// Check an answer: `{success, token?, message}`. A solved captcha yields exactly one
/// single-use token; a captcha allows [`MAX_ATTEMPTS`] answers.
pub async fn verify(redis: &Redis, b: &Answer) -> Result<Value, DomainError> {
    Checks::new()
        .len_between(&b.captcha_id, "captcha_id", 1, 64)
        .check(
            b.x.is_finite() && (0.0..=1000.0).contains(&b.x),
            "x",
            "value_error",
            "must be 0 to 1000",
        )
        .check(
            b.trail.as_ref().is_none_or(|t| t.len() <= 2000),
            "trail",
            "too_long",
            "at most 2000 points",
        )
        .finish()?;
    let key = redis.key(&format!("captcha:{}", b.captcha_id));
    let attempts_key = redis.key(&format!("captcha_attempts:{}", b.captcha_id));
    let stored: Option<i64> = redis
        .query(redis::cmd("GET").arg(&key))
        .await
        .map_err(|_| unavailable())?;
    let Some(expected) = stored else {
        return Ok(json!({"success": false, "message": "The captcha expired; get a new one"}));
    };
    let attempts: u32 = redis
        .pipeline::<(u32,)>(
            redis::pipe()
                .cmd("INCR")
                .arg(&attempts_key)
                .cmd("EXPIRE")
                .arg(&attempts_key)
                .arg(CAPTCHA_TTL_S)
                .ignore(),
        )
        .await
        .map(|(n,)| n)
        .map_err(|_| unavailable())?;
    let close = (b.x.round() as i64 - expected).abs() <= TOLERANCE_PX;
    let human_speed = b.duration.is_none_or(|d| d >= MIN_DURATION_MS as f64);
    if close && human_speed && attempts <= MAX_ATTEMPTS {
        // DEL answers 1 only once: a solved captcha yields exactly one token.
        let deleted: i64 = redis
            .query(redis::cmd("DEL").arg(&key).arg(&attempts_key))
            .await
            .map_err(|_| unavailable())?;
        if deleted > 0 {
            let token = new_token();
            redis
                .query::<()>(
                    redis::cmd("SET")
                        .arg(redis.key(&format!("captcha_token:{token}")))
                        .arg("1")
                        .arg("EX")
                        .arg(TOKEN_TTL_S),
                )
                .await
                .map_err(|_| unavailable())?;
            return Ok(json!({"success": true, "token": token, "message": "ok"}));
        }
    }
    if attempts >= MAX_ATTEMPTS {
        let _: Result<(), _> = redis
            .query(redis::cmd("DEL").arg(&key).arg(&attempts_key))
            .await;
        return Ok(json!({"success": false, "message": "Too many attempts; get a new captcha"}));
    }
    let message = if !human_speed {
        "Too fast; try again"
    } else {
        "Not quite; try again"
    };
    Ok(json!({"success": false, "message": message}))
}

/// For login when `EF__LOGIN_CAPTCHA=true`: consume a token, `true` when it was valid. Fails
/// closed: when Redis cannot be asked the answer is 503 `CAPTCHA_UNAVAILABLE`, never "accepted"
/// (the original let any made-up token through while Redis was down).
pub async fn consume_token(redis: &Redis, token: &str) -> Result<bool, DomainError> {
    if token.is_empty() || token.len() > 128 {
        return Ok(false);
    }
    match redis
        .query::<i64>(redis::cmd("DEL").arg(redis.key(&format!("captcha_token:{token}"))))
        .await
    {
        Ok(n) => Ok(n > 0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot check the captcha token; refusing the login attempt");
            Err(unavailable())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_images_are_pngs_of_the_right_size() {
        let c = generate().unwrap();
        assert!((86..=204).contains(&c.x));
        assert!((26 - KNOB..=84 - KNOB).contains(&c.y));
        for (png, w) in [(&c.background_png, WIDTH), (&c.piece_png, PIECE + KNOB)] {
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
            assert_eq!(width, w);
        }
        assert!(data_url(&c.piece_png).starts_with("data:image/png;base64,iVBOR"));
    }

    #[test]
    fn the_shape_has_knobs() {
        assert!(in_shape(25, 30));
        assert!(in_shape(25, 1), "top knob");
        assert!(in_shape(57, 33), "right knob");
        assert!(!in_shape(2, 2), "outside the top-left corner");
    }
}
