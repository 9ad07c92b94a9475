//! Connectors: the public catalogue and project connectors.

use crate::error::Result;
use crate::http::{Ctx, Reply};

pub async fn catalogue(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("catalogue"))
}

pub async fn list(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("list"))
}

pub async fn create(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("create"))
}

pub async fn delete(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("delete"))
}
