//! Backend control of connections through ws-api's BizMsgService: Kick by
//! uid and by sid, groups across cores, broadcast.

mod common;

use common::*;
use ws_api::proto::wsapi::{BizMsg, GroupMsg, GroupRequest, KickRequest};

#[tokio::test]
async fn kick_by_uid_closes_that_users_sessions_only() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &[]);
    let mut victims = Vec::new();
    for _ in 0..3 {
        victims.push(connect(gw.addr, "21").await);
    }
    let mut bystander = connect(gw.addr, "22").await;
    assert_eq!(kick_uid(api.addr, 21, 4001, "account suspended").await, 3);
    for ws in &mut victims {
        assert_eq!(
            expect_close(ws).await,
            (4001, "account suspended".to_owned())
        );
    }
    nothing_pending(&mut bystander, "still here").await;
}

#[tokio::test]
async fn kick_by_sid_closes_one_session() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &[]);
    let (mut a, sid_a) = connect_with_sid(gw.addr, "23").await;
    let (mut b, sid_b) = connect_with_sid(gw.addr, "23").await;
    assert_ne!(sid_a, sid_b);
    let core = |sid: &str| sid.split('-').nth(1).expect("core in sid").to_owned();
    let server = format!("{}#{}", gw.addr, core(&sid_a));
    let kick = KickRequest {
        server,
        sid: sid_a,
        reason: "duplicate login".into(),
        ..Default::default()
    };
    assert_eq!(
        biz(api.addr)
            .await
            .kick(kick)
            .await
            .unwrap()
            .into_inner()
            .closed,
        1
    );
    assert_eq!(
        expect_close(&mut a).await,
        (1000, "duplicate login".to_owned())
    );
    nothing_pending(&mut b, "b survives").await;
}

#[tokio::test]
async fn groups_reach_members_across_cores_and_leave_works() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &[]);
    let mut users = Vec::new();
    for uid in [41, 42, 43] {
        let mut sessions = Vec::new();
        for _ in 0..4 {
            sessions.push(connect(gw.addr, &uid.to_string()).await);
        }
        users.push(sessions);
    }
    let mut client = biz(api.addr).await;
    for uid in [41, 42] {
        let req = GroupRequest {
            uid,
            group: "room".into(),
        };
        assert_eq!(
            client.join_group(req).await.unwrap().into_inner().sessions,
            4
        );
    }
    let push = |payload: &str| GroupMsg {
        group: "room".into(),
        biz_code: "room".into(),
        biz_payload: payload.into(),
    };
    assert_eq!(
        client
            .push_group(push("one"))
            .await
            .unwrap()
            .into_inner()
            .success_count,
        8
    );
    for ws in users[..2].iter_mut().flatten() {
        assert_eq!(
            recv(ws).await.into_text().unwrap().as_str(),
            frame("room", b"one")
        );
    }
    for ws in &mut users[2] {
        nothing_pending(ws, "not in room").await;
    }

    let leave = GroupRequest {
        uid: 42,
        group: "room".into(),
    };
    assert_eq!(
        client
            .leave_group(leave)
            .await
            .unwrap()
            .into_inner()
            .sessions,
        4
    );
    assert_eq!(
        client
            .push_group(push("two"))
            .await
            .unwrap()
            .into_inner()
            .success_count,
        4
    );
    for ws in &mut users[0] {
        assert_eq!(
            recv(ws).await.into_text().unwrap().as_str(),
            frame("room", b"two")
        );
    }
    for ws in &mut users[1] {
        nothing_pending(ws, "left the room").await;
    }
}

#[tokio::test]
async fn broadcast_reaches_every_session_on_every_core() {
    let api = ws_api("127.0.0.1:0", "echo");
    let gw = gateway(api.addr, 2, &[]);
    let mut sessions = Vec::new();
    for uid in 1..=12 {
        sessions.push(connect(gw.addr, &uid.to_string()).await);
    }
    let msg = BizMsg {
        biz_code: "news".into(),
        biz_payload: "all".into(),
        ..Default::default()
    };
    assert_eq!(
        biz(api.addr)
            .await
            .broadcast(msg)
            .await
            .unwrap()
            .into_inner()
            .success_count,
        12
    );
    for ws in &mut sessions {
        assert_eq!(
            recv(ws).await.into_text().unwrap().as_str(),
            frame("news", b"all")
        );
    }
    let admin = gw.admin.expect("admin");
    assert!(metric(admin, "gateway_fan_outs_total").unwrap() >= 1.0);
}
