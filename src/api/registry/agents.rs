//! Agents: deploy, list, get, delete.

use crate::error::Result;
use crate::http::{Ctx, Reply};

pub async fn deploy(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("deploy"))
}

pub async fn list(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("list"))
}

pub async fn get(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("get"))
}

pub async fn delete(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("delete"))
}
