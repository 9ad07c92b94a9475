//! Synthesize: token-budgeted context packs.

use crate::error::Result;
use crate::http::{Ctx, Reply};

pub async fn synthesize(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("synthesize"))
}
