//! Publishing the trust bundle: the CA certificate in the ConfigMap
//! [`TRUST_BUNDLE_CONFIGMAP`](super::TRUST_BUNDLE_CONFIGMAP) of the agents' namespace,
//! under the key [`TRUST_BUNDLE_KEY`](super::TRUST_BUNDLE_KEY) (created, or updated when
//! it differs).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::rbac;
use super::{TRUST_BUNDLE_CONFIGMAP, TRUST_BUNDLE_KEY};

/// Creates or updates the bundle ConfigMap in `namespace`; whether it changed.
pub async fn publish(client: &Client, namespace: &str, bundle_pem: &str) -> Result<bool, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let current = api.get_opt(TRUST_BUNDLE_CONFIGMAP).await.map_err(|e| format!("{e} (needs {})", rbac::CONFIGMAP_GET))?;
    let data = BTreeMap::from([(TRUST_BUNDLE_KEY.to_string(), bundle_pem.to_string())]);
    match current {
        Some(existing) if existing.data.as_ref() == Some(&data) => Ok(false),
        Some(mut existing) => {
            existing.data = Some(data);
            let name = TRUST_BUNDLE_CONFIGMAP;
            api.replace(name, &PostParams::default(), &existing).await.map_err(|e| format!("{e} (needs {})", rbac::CONFIGMAP_UPDATE))?;
            Ok(true)
        }
        None => {
            let map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(TRUST_BUNDLE_CONFIGMAP.into()),
                    namespace: Some(namespace.into()),
                    labels: Some(BTreeMap::from([("app.kubernetes.io/name".to_string(), "ambit".to_string())])),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            api.create(&PostParams::default(), &map).await.map_err(|e| format!("{e} (needs {})", rbac::CONFIGMAP_CREATE))?;
            Ok(true)
        }
    }
}
