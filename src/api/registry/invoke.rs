//! Agent invocation.

use crate::error::Result;
use crate::http::{Ctx, Reply};

pub async fn invoke(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("invoke"))
}
