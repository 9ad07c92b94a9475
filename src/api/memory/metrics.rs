//! Usage metrics.

use crate::error::Result;
use crate::http::{Ctx, Reply};

pub async fn usage_metrics(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("usage_metrics"))
}
