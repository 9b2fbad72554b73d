//! Every container image a workload runs: containers, init containers and ephemeral
//! containers of Pods, and of the pod templates of Deployments, StatefulSets, DaemonSets,
//! ReplicaSets, Jobs and CronJobs.

use serde_json::Value;

/// Which list of the pod spec a container comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerKind {
    /// `containers`
    Regular,
    /// `initContainers`
    Init,
    /// `ephemeralContainers`
    Ephemeral,
}

/// One container's image, with the path a person can find it at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerImage {
    /// Field path, such as `spec.template.spec.initContainers[0].image`.
    pub path: String,
    /// Container name.
    pub container: String,
    /// Image reference as written.
    pub image: String,
    /// Which container list it is in.
    pub kind: ContainerKind,
}

/// Path of the pod spec inside an object of `kind`, or `None` for kinds without one.
pub fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&["spec"]),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some(&["spec", "template", "spec"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => None,
    }
}

/// Every container image in `object` of `kind`, in spec order (init, regular, ephemeral).
/// Containers without an image are reported with an empty image so a policy can refuse
/// them explicitly rather than skip them.
pub fn images(kind: &str, object: &Value) -> Vec<ContainerImage> {
    let Some(path) = pod_spec_path(kind) else {
        return Vec::new();
    };
    let mut spec = object;
    for key in path {
        spec = &spec[*key];
    }
    let prefix = path.join(".");
    let mut found = Vec::new();
    for (field, kind) in [
        ("initContainers", ContainerKind::Init),
        ("containers", ContainerKind::Regular),
        ("ephemeralContainers", ContainerKind::Ephemeral),
    ] {
        let Some(list) = spec[field].as_array() else {
            continue;
        };
        for (i, container) in list.iter().enumerate() {
            found.push(ContainerImage {
                path: format!("{prefix}.{field}[{i}].image"),
                container: container["name"].as_str().unwrap_or_default().to_string(),
                image: container["image"].as_str().unwrap_or_default().to_string(),
                kind,
            });
        }
    }
    found
}
