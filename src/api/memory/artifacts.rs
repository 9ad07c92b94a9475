//! Artifacts: list, get, deprecate, restore.

use crate::error::Result;
use crate::http::{Ctx, Reply};

pub async fn list(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("list"))
}

pub async fn get(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("get"))
}

pub async fn delete(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("delete"))
}

pub async fn patch(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("patch"))
}
