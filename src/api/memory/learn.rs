//! Learn: POST /v1/learn and GET /v1/learn/{id}.

use crate::error::Result;
use crate::http::{Ctx, Reply};

pub async fn learn(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("learn"))
}

pub async fn learn_status(_ctx: Ctx) -> Result<Reply> {
    Err(crate::api::not_yet("learn_status"))
}
