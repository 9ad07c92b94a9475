//! Events, memories and forgetting sessions.

use crate::error::Result;
use crate::http::{Ctx, Reply};

pub async fn list_events(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("list_events"))
}

pub async fn get_event(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("get_event"))
}

pub async fn list_memories(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("list_memories"))
}

pub async fn get_memory(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("get_memory"))
}

pub async fn forget_session(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("forget_session"))
}
