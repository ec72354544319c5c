//! The caller's tenant: API keys by their SHA-256, scopes, and the `Reader` / `Writer`
//! extractors every `/v1` handler takes.

use std::collections::HashMap;

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, header, request::Parts},
};
use sha2::{Digest, Sha256};

use crate::{
    config::{ApiKeySettings, Scope},
    domain::ids::Tenant,
    error::ApiError,
    http::{AppState, extract::AppPath},
};

/// The API keys, by the hex SHA-256 of the key.
#[derive(Debug)]
pub struct ApiKeys {
    by_hash: HashMap<String, (Tenant, Vec<Scope>)>,
    /// Every request's tenant when no keys are configured.
    default_tenant: Tenant,
}

impl ApiKeys {
    pub fn new(keys: &[ApiKeySettings]) -> Self {
        Self {
            by_hash: keys
                .iter()
                .map(|k| {
                    (
                        k.sha256.to_ascii_lowercase(),
                        (Tenant::new(k.tenant.clone()), k.scopes.clone()),
                    )
                })
                .collect(),
            default_tenant: Tenant::new(Tenant::DEFAULT),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The tenant a request acts for, if its key allows `needed`.
    fn authorize(&self, parts: &Parts, needed: Scope) -> Result<Tenant, ApiError> {
        let (tenant, scopes) = self.authenticate(&parts.headers)?;
        let allowed = scopes.contains(&Scope::Admin) || scopes.contains(&needed);
        if !allowed {
            let scope = match needed {
                Scope::Read => "read",
                Scope::Write => "write",
                Scope::Admin => "admin",
            };
            return Err(ApiError::forbidden(format!(
                "this API key lacks the {scope} scope"
            )));
        }
        Ok(tenant)
    }

    /// The tenant and scopes of the request's API key (the default tenant, with every scope,
    /// when no keys are configured): 401 without a valid key.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<(Tenant, &[Scope]), ApiError> {
        if headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .nth(1)
            .is_some()
        {
            return Err(ApiError::invalid_request(
                "more than one Authorization header: send exactly one",
            ));
        }
        if self.by_hash.is_empty() {
            return Ok((self.default_tenant.clone(), &[Scope::Admin]));
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("an API key is required: Authorization: Bearer <key>")
            })?;
        let hash = hex::encode(Sha256::digest(presented.as_bytes()));
        let (tenant, scopes) = self
            .by_hash
            .get(&hash)
            .ok_or_else(|| ApiError::invalid_key("the API key is not valid"))?;
        Ok((tenant.clone(), scopes))
    }
}

/// A caller allowed to read: the tenant its key belongs to (`default` without keys).
pub struct Reader(pub Tenant);

/// A caller allowed to write.
pub struct Writer(pub Tenant);

/// A caller whose key has the `admin` scope (backup, restore): its tenant.
pub struct Admin(pub Tenant);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.api_keys.authorize(parts, Scope::Admin).map(Admin)
    }
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.api_keys.authorize(parts, Scope::Read).map(Reader)
    }
}

impl FromRequestParts<AppState> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        state.api_keys.authorize(parts, Scope::Write).map(Writer)
    }
}

/// A path that names one item, such as `/v1/agent-states/{thread_id}`: deserialised from the
/// route's parameters, then parsed into the item's domain id.
pub trait ItemPath: serde::de::DeserializeOwned + Send {
    type Id: Send;

    fn parse(self) -> Result<Self::Id, ApiError>;
}

/// A caller allowed to read one item: its tenant and the item's id. The key is checked before
/// the path, so a caller without a key learns nothing about ids (401 before 400).
pub struct ReadAt<P: ItemPath>(pub Tenant, pub P::Id);

/// A caller allowed to write one item: its tenant and the item's id.
pub struct WriteAt<P: ItemPath>(pub Tenant, pub P::Id);

async fn item<P: ItemPath>(
    parts: &mut Parts,
    state: &AppState,
    needed: Scope,
) -> Result<(Tenant, P::Id), ApiError> {
    let tenant = state.api_keys.authorize(parts, needed)?;
    let AppPath(path) = AppPath::<P>::from_request_parts(parts, state).await?;
    Ok((tenant, path.parse()?))
}

impl<P: ItemPath> FromRequestParts<AppState> for ReadAt<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (tenant, id) = item::<P>(parts, state, Scope::Read).await?;
        Ok(ReadAt(tenant, id))
    }
}

impl<P: ItemPath> FromRequestParts<AppState> for WriteAt<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (tenant, id) = item::<P>(parts, state, Scope::Write).await?;
        Ok(WriteAt(tenant, id))
    }
}

/// A path with one id parameter of `domain::ids`' form (1–256 bytes of `[A-Za-z0-9._:@-]`,
/// the one pattern stated here), with its `ItemPath` impl:
/// `id_path!(LockPath, name => LockName, "invoice-42", "The lock's name.")` documents `{name}`
/// with that description and example, and parses it with `LockName::parse`.
macro_rules! id_path {
    ($path:ident, $param:ident => $id:ty, $example:literal, $description:literal) => {
        #[derive(serde::Deserialize, utoipa::IntoParams)]
        #[into_params(parameter_in = Path)]
        pub struct $path {
            #[doc = $description]
            #[param(pattern = "^[A-Za-z0-9._:@-]{1,256}$", example = $example)]
            $param: String,
        }

        impl $crate::http::extract::ItemPath for $path {
            type Id = $id;

            fn parse(self) -> $crate::error::ApiResult<$id> {
                Ok(<$id>::parse(self.$param)?)
            }
        }
    };
}

pub(crate) use id_path;
