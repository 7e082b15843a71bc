//! Password accounts with OPAQUE: the password never leaves this process;
//! the relay keeps only the registration record. Registering and logging in
//! also bind this device's identity key to the account.

use ed25519_dalek::SigningKey;
use qpc_proto::opaque::opaque_ke::{
    ClientLogin, ClientLoginFinishParameters, ClientRegistration, ClientRegistrationFinishParameters,
    CredentialResponse, RegistrationResponse,
};
use qpc_proto::opaque::Suite;
use qpc_proto::{pb, Method};
use rand::rngs::OsRng;

use crate::relay::{Relay, RelayError};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error("wrong password for account {0:?}")]
    WrongPassword(String),
    #[error("the relay sent a malformed OPAQUE message")]
    Malformed,
}

/// Creates `username` on the relay with `password`, binding `key`.
/// `token` is needed when the relay's registration mode is `token`.
pub async fn register(
    relay: &Relay,
    username: &str,
    password: &str,
    token: &str,
    key: &SigningKey,
) -> Result<(), AccountError> {
    let start = ClientRegistration::<Suite>::start(&mut OsRng, password.as_bytes())
        .map_err(|_| AccountError::Malformed)?;
    let req = pb::OpaqueRegisterStartRequest {
        username: username.to_string(),
        registration_request: start.message.serialize().to_vec(),
        registration_token: token.to_string(),
    };
    let resp: pb::OpaqueRegisterStartResponse = relay.call(Method::OpaqueRegisterStart, &req).await?;
    let response = RegistrationResponse::<Suite>::deserialize(&resp.registration_response)
        .map_err(|_| AccountError::Malformed)?;
    let finish = start
        .state
        .finish(&mut OsRng, password.as_bytes(), response, ClientRegistrationFinishParameters::default())
        .map_err(|_| AccountError::Malformed)?;
    let (identity_key, signature) = relay.identity_proof(key).await?;
    let req = pb::OpaqueRegisterFinishRequest {
        username: username.to_string(),
        registration_upload: finish.message.serialize().to_vec(),
        identity_key,
        signature,
    };
    let _: pb::OpaqueRegisterFinishResponse = relay.call(Method::OpaqueRegisterFinish, &req).await?;
    Ok(())
}

/// Logs in as `username`, binding `key` as one of the account's devices.
pub async fn login(
    relay: &Relay,
    username: &str,
    password: &str,
    key: &SigningKey,
) -> Result<(), AccountError> {
    let start =
        ClientLogin::<Suite>::start(&mut OsRng, password.as_bytes()).map_err(|_| AccountError::Malformed)?;
    let req = pb::OpaqueLoginStartRequest {
        username: username.to_string(),
        credential_request: start.message.serialize().to_vec(),
    };
    let resp: pb::OpaqueLoginStartResponse = relay.call(Method::OpaqueLoginStart, &req).await?;
    let response = CredentialResponse::<Suite>::deserialize(&resp.credential_response)
        .map_err(|_| AccountError::Malformed)?;
    // The envelope opens only with the right password.
    let finish = start
        .state
        .finish(password.as_bytes(), response, ClientLoginFinishParameters::default())
        .map_err(|_| AccountError::WrongPassword(username.to_string()))?;
    let (identity_key, signature) = relay.identity_proof(key).await?;
    let req = pb::OpaqueLoginFinishRequest {
        credential_finalization: finish.message.serialize().to_vec(),
        identity_key,
        signature,
    };
    let _: pb::OpaqueLoginFinishResponse = relay.call(Method::OpaqueLoginFinish, &req).await?;
    Ok(())
}
