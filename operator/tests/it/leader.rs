use std::time::Duration;

use http::Method;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};
use stellaops_operator::leader::{Decision, LeaderConfig, LeaderElector, Round, decide};
use stellaops_testing::mock_client;

const LEASE_PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/stellaops-system/leases/stellaops-operator-leader";

fn lease(holder: Option<&str>, renewed: Timestamp, transitions: i32) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": "stellaops-operator-leader", "namespace": "stellaops-system", "resourceVersion": "41"},
           "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                    "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
                    "leaseTransitions": transitions}})
}

fn typed(value: Value) -> Lease {
    serde_json::from_value(value).unwrap()
}

#[test]
fn decisions() {
    let now = Timestamp::from_second(1_700_000_000).unwrap();
    let fresh = now - jiff::SignedDuration::from_secs(5);
    let stale = now - jiff::SignedDuration::from_secs(16);
    assert_eq!(decide(None, "me", now), Decision::Create);
    assert_eq!(
        decide(Some(&typed(lease(Some("me"), stale, 1))), "me", now),
        Decision::Renew
    );
    assert_eq!(
        decide(Some(&typed(lease(Some("other"), fresh, 1))), "me", now),
        Decision::Follow {
            holder: "other".into()
        }
    );
    assert_eq!(
        decide(Some(&typed(lease(Some("other"), stale, 1))), "me", now),
        Decision::TakeOver
    );
    assert_eq!(
        decide(Some(&typed(lease(None, fresh, 1))), "me", now),
        Decision::TakeOver
    );
}

fn elector(client: kube::Client) -> LeaderElector {
    LeaderElector::new(
        client,
        LeaderConfig {
            namespace: "stellaops-system".into(),
            lease_name: "stellaops-operator-leader".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_millis(10),
        },
    )
}

#[tokio::test]
async fn creates_the_lease_when_there_is_none() {
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        server.expect(Method::GET, LEASE_PATH).await.respond_status(
            404,
            "NotFound",
            "leases \"x\" not found",
        );
        let create = server
            .expect(
                Method::POST,
                "/apis/coordination.k8s.io/v1/namespaces/stellaops-system/leases",
            )
            .await;
        assert_eq!(create.body["spec"]["holderIdentity"], "me");
        assert_eq!(create.body["spec"]["leaseTransitions"], 1);
        create.respond_with_request_body();
    });
    assert_eq!(elector(client).round().await.unwrap(), Round::Leading);
    verifier.await.unwrap();
}

#[tokio::test]
async fn renews_with_optimistic_concurrency_and_follows_a_live_holder() {
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        let old = Timestamp::now() - jiff::SignedDuration::from_secs(3);
        server
            .expect(Method::GET, LEASE_PATH)
            .await
            .respond(200, lease(Some("me"), old, 2));
        let put = server.expect(Method::PUT, LEASE_PATH).await;
        assert_eq!(
            put.body["metadata"]["resourceVersion"], "41",
            "renewal must be conditional"
        );
        assert_eq!(
            put.body["spec"]["leaseTransitions"], 2,
            "a renewal is not a transition"
        );
        put.respond_with_request_body();

        server
            .expect(Method::GET, LEASE_PATH)
            .await
            .respond(200, lease(Some("other"), Timestamp::now(), 3));
        server
            .expect_no_more_calls(Duration::from_millis(100))
            .await;
    });
    let elector = elector(client);
    assert_eq!(elector.round().await.unwrap(), Round::Leading);
    assert_eq!(
        elector.round().await.unwrap(),
        Round::Following("other".into())
    );
    verifier.await.unwrap();
}

#[tokio::test]
async fn takes_over_an_expired_lease_and_loses_a_race_gracefully() {
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        let stale = Timestamp::now() - jiff::SignedDuration::from_secs(60);
        server
            .expect(Method::GET, LEASE_PATH)
            .await
            .respond(200, lease(Some("crashed"), stale, 4));
        let put = server.expect(Method::PUT, LEASE_PATH).await;
        assert_eq!(put.body["spec"]["holderIdentity"], "me");
        assert_eq!(put.body["spec"]["leaseTransitions"], 5);
        // Another candidate wrote first: the API server refuses our stale resourceVersion.
        put.respond_status(409, "Conflict", "the object has been modified");
    });
    assert!(matches!(
        elector(client).round().await.unwrap(),
        Round::Following(_)
    ));
    verifier.await.unwrap();
}

#[tokio::test]
async fn hold_returns_when_another_replica_takes_the_lease() {
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        server
            .expect(Method::GET, LEASE_PATH)
            .await
            .respond(200, lease(Some("me"), Timestamp::now(), 1));
        server
            .expect(Method::PUT, LEASE_PATH)
            .await
            .respond_with_request_body();
        server
            .expect(Method::GET, LEASE_PATH)
            .await
            .respond(200, lease(Some("usurper"), Timestamp::now(), 2));
    });
    let reason = elector(client).hold().await;
    assert!(reason.contains("usurper"), "{reason}");
    verifier.await.unwrap();
}

#[tokio::test]
async fn release_clears_the_holder_only_when_it_is_us() {
    let (client, mut server) = mock_client("default");
    let verifier = tokio::spawn(async move {
        server
            .expect(Method::GET, LEASE_PATH)
            .await
            .respond(200, lease(Some("me"), Timestamp::now(), 1));
        let put = server.expect(Method::PUT, LEASE_PATH).await;
        assert!(
            put.body["spec"]
                .get("holderIdentity")
                .is_none_or(Value::is_null),
            "{}",
            put.body
        );
        put.respond_with_request_body();
        server
            .expect(Method::GET, LEASE_PATH)
            .await
            .respond(200, lease(Some("other"), Timestamp::now(), 2));
        server
            .expect_no_more_calls(Duration::from_millis(100))
            .await;
    });
    let elector = elector(client);
    elector.release().await.unwrap();
    elector.release().await.unwrap();
    verifier.await.unwrap();
}

/// The leader's runtime is held busy (a blocking reconcile, a huge list being decoded) for
/// three lease durations; the Lease is renewed all along by the renewal thread, and
/// leadership is not lost.
#[test]
fn renewal_continues_while_the_controllers_runtime_is_blocked() {
    use stellaops_operator::leader::LeaseHolder;
    use stellaops_testing::apiserver::{Emulator, EmulatorOptions};

    // The API server on a runtime of its own, as a real one is its own process.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let emulator = server_runtime
        .block_on(Emulator::start(EmulatorOptions {
            authorize: false,
            ..Default::default()
        }))
        .unwrap();
    let kubeconfig = emulator.kubeconfig(&emulator.admin_token());
    let config = LeaderConfig {
        namespace: "stellaops-system".into(),
        lease_name: "stellaops-operator-leader".into(),
        identity: "me".into(),
        lease_duration: Duration::from_millis(1500),
        retry_period: Duration::from_millis(100),
    };
    let renew_time = || -> Timestamp {
        let leases = emulator.objects("coordination.k8s.io/v1", "Lease");
        leases[0]["spec"]["renewTime"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };

    // The operator's runtime: one thread, like a runtime whose workers are all busy.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut holder = runtime.block_on(async {
        let client_config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        let client = kube::Client::try_from(client_config.clone()).unwrap();
        let elector = LeaderElector::new(client, config.clone());
        assert_eq!(elector.round().await.unwrap(), Round::Leading);
        LeaseHolder::start(client_config, config.clone()).unwrap()
    });
    let acquired = renew_time();
    runtime.block_on(async {
        // Blocks the only thread of this runtime: nothing else on it runs meanwhile.
        std::thread::sleep(Duration::from_millis(4500));
    });
    let renewed = renew_time();
    let age = Timestamp::now().duration_since(renewed);
    assert!(
        renewed > acquired && age < jiff::SignedDuration::from_millis(1000),
        "the Lease was last renewed {age:?} ago (acquired at {acquired}, renewed at {renewed})"
    );
    assert!(!holder.is_lost(), "leadership was lost while blocked");
    runtime.block_on(holder.stop());
    server_runtime.block_on(emulator.shutdown());
}
