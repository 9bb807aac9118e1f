//! One ACME conversation with the CA, through instant-acme: the account
//! (created once, then read from the state directory), and one order for a
//! set of names with a key tlsfront chose, answered by HTTP-01.

use std::path::Path;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use thiserror::Error;

use super::http01::Responder;
use super::store::{Store, StoreError};
use crate::limits;

#[derive(Debug, Error)]
pub enum AcmeError {
    #[error("ACME account at {directory}: {message}")]
    Account { directory: String, message: String },
    #[error("order for {names}: {message}")]
    Order { names: String, message: String },
    #[error("validation of {name} failed: {message}")]
    Validation { name: String, message: String },
    #[error("CA file {path}: {message}")]
    CaFile { path: String, message: String },
    #[error("key: {0}")]
    Key(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no answer from the CA within {}s", limits::ACME_ORDER_TIMEOUT.as_secs() * 2)]
    Timeout,
}

/// The account for `directory`: read from the store, or created (and stored).
pub async fn account(
    store: &Store,
    directory: &str,
    contact: &[String],
    ca_file: Option<&Path>,
) -> Result<Account, AcmeError> {
    let fail = |message: String| AcmeError::Account {
        directory: directory.to_string(),
        message,
    };
    let builder = || match ca_file {
        Some(path) => Account::builder_with_root(path).map_err(|e| AcmeError::CaFile {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
        None => Account::builder().map_err(|e| fail(e.to_string())),
    };
    let file = store.account_file(directory);
    if let Some(text) = store.read(&file)? {
        let credentials: AccountCredentials =
            serde_json::from_str(&text).map_err(|e| fail(format!("{}: {e}", file.display())))?;
        return builder()?
            .from_credentials(credentials)
            .await
            .map_err(|e| fail(e.to_string()));
    }
    let contact: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_string(),
            None,
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
    let text = serde_json::to_string_pretty(&credentials).map_err(|e| fail(e.to_string()))?;
    store.write(&file, text.as_bytes(), true)?;
    tracing::info!(directory, id = account.id(), "ACME account created");
    Ok(account)
}

/// Orders a certificate for `names` with the key `key` (its CSR is signed
/// here): the chain as PEM, leaf first.
pub async fn order(
    account: &Account,
    names: &[String],
    key: &rcgen::KeyPair,
    responder: &Responder,
) -> Result<String, AcmeError> {
    let tokens = std::sync::Mutex::new(Vec::<String>::new());
    let result = tokio::time::timeout(
        limits::ACME_ORDER_TIMEOUT * 2,
        run_order(account, names, key, responder, &tokens),
    )
    .await
    .unwrap_or(Err(AcmeError::Timeout));
    for t in tokens.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        responder.remove(t);
    }
    result
}

async fn run_order(
    account: &Account,
    names: &[String],
    key: &rcgen::KeyPair,
    responder: &Responder,
    tokens: &std::sync::Mutex<Vec<String>>,
) -> Result<String, AcmeError> {
    let all = names.join(", ");
    let fail = |message: String| AcmeError::Order {
        names: all.clone(),
        message,
    };
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| fail(e.to_string()))?;
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(fail(format!(
                    "authorization for {} is {other:?}",
                    authz.identifier()
                )));
            }
        }
        let name = authz.identifier().to_string();
        let mut challenge = authz
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| fail(format!("the CA offers no http-01 challenge for {name}")))?;
        let key_authorization = challenge.key_authorization();
        responder
            .put(&challenge.token, key_authorization.as_str())
            .map_err(|e| fail(format!("cannot place the http-01 token: {e}")))?;
        tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(challenge.token.clone());
        challenge
            .set_ready()
            .await
            .map_err(|e| fail(e.to_string()))?;
    }
    let retries = RetryPolicy::new().timeout(limits::ACME_ORDER_TIMEOUT);
    let status = order.poll_ready(&retries).await;
    if !matches!(status, Ok(OrderStatus::Ready)) {
        // Say which name failed and what the CA saw, when it says.
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = authorizations.next().await {
            let _ = authz.refresh().await;
            let name = authz.identifier().to_string();
            if let Some(problem) = authz.challenges.iter().find_map(|c| c.error.as_ref()) {
                return Err(AcmeError::Validation {
                    name,
                    message: problem
                        .detail
                        .clone()
                        .unwrap_or_else(|| problem.to_string()),
                });
            }
        }
        return Err(match status {
            Err(e) => fail(e.to_string()),
            Ok(s) => fail(format!("the order is {s:?}")),
        });
    }
    let mut params =
        rcgen::CertificateParams::new(names.to_vec()).map_err(|e| AcmeError::Key(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(key)
        .map_err(|e| AcmeError::Key(e.to_string()))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| fail(e.to_string()))?;
    order
        .poll_certificate(&retries)
        .await
        .map_err(|e| fail(e.to_string()))
}
