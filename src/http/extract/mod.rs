//! Extractors in the house format: JSON bodies, paths and queries ([`json`]), the caller's
//! tenant ([`auth`]) and conditional writes ([`conditional`]). Their rejections become
//! `ApiError`s in `crate::error`, like every other error.

pub mod auth;
pub mod conditional;
pub mod json;

pub use self::{
    auth::{Admin, ApiKeys, ItemPath, ReadAt, Reader, WriteAt, Writer},
    conditional::{IF_MATCH_PATTERN, IfMatch, IfMatchHeader, etag, if_match_param},
    json::{
        AppJson, AppPath, AppQuery, ContentType, Whole, page_cursor, page_limit, require_json,
        require_json_type, time_of_us,
    },
};

pub(crate) use self::auth::id_path;
