//! Capture: POST /v1/capture and /v1/capture/batch.

use crate::error::Result;
use crate::http::{Ctx, Reply};

pub async fn capture(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("capture"))
}

pub async fn capture_batch(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("capture_batch"))
}
