//! Projects and members.

use crate::error::Result;
use crate::http::{Ctx, Reply};

pub async fn list(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("list"))
}

pub async fn create(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("create"))
}

pub async fn get(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("get"))
}

pub async fn list_members(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("list_members"))
}

pub async fn invite(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("invite"))
}

pub async fn remove_member(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("remove_member"))
}
