//! A session's steps in a resume: ask ws-api for what the client missed
//! (or answer `resume-failed` at once), hold positioned live messages while
//! the replay runs, and end it with the `resumed` frame and what was held.
//! The rules for what is held and dropped are [`super::resume`]'s; this
//! file does the session's I/O around them.

use std::rc::Rc;

use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use futures_util::SinkExt;
use tracing::debug;

use super::resume::Outcome;
use super::{End, ResumePlan, Session, close};
use crate::metrics;
use crate::proto;
use crate::proto::wsapi::control::Op;
use crate::proto::wsapi::{Control, Resumed};
use crate::proto::wsgateway::Protocol;
use crate::routing::sessions::Outbound;

impl Session {
    /// Asks ws-api for what the client missed, or tells the client it cannot.
    pub(super) async fn start_resume(&mut self) -> Result<(), End> {
        let Some(plan) = self.resume.take() else {
            return Ok(());
        };
        let (since, device) = match *plan {
            ResumePlan::Ask(since, device) => (since, device),
            ResumePlan::Refused => {
                self.resuming = Some(Box::default());
                return self
                    .end_resume(Some(Resumed {
                        failed: true,
                        ..Resumed::default()
                    }))
                    .await;
            }
        };
        let control = Control {
            op: Some(Op::Resume(proto::wsapi::Resume {
                uid: self.uid,
                since: since.map(|p| p.to_string()).unwrap_or_default(),
                device: device.map(|d| d.to_string()).unwrap_or_default(),
            })),
        };
        self.resuming = Some(Box::default());
        let prefix = &self.prefix;
        let asked = self
            .core
            .upstream
            .enqueue(self.uid, |buf| prefix.encode_grpc_control(control, buf));
        if asked.is_err() {
            return self.end_resume(None).await;
        }
        // The answer comes through the send queue; so does the deadline.
        let handle = Rc::clone(&self.handle);
        let timeout = self.core.config.resume_timeout;
        let deadline = async move {
            glommio::timer::sleep(timeout).await;
            let _ = handle.push(Outbound::Resumed(None));
        };
        glommio::spawn_local(deadline).detach();
        Ok(())
    }

    /// A live message: held while a replay runs if it has a position.
    pub(super) async fn live(&mut self, p: Protocol) -> Result<(), End> {
        let counters = &self.core.counters;
        if p.r#type == "ack" && !p.id.is_empty() {
            counters.client_acks.inc();
            if p.duplicate {
                counters.client_duplicates.inc();
            }
        }
        let Some(resuming) = self.resuming.as_mut() else {
            return self.feed(&p).await;
        };
        match resuming.live(p) {
            Some(p) => self.feed(&p).await,
            // Held messages left the send queue: bound them the same way.
            None if resuming.replaying() && resuming.held() > self.core.config.send_queue => {
                Err(close(
                    CloseCode::Again,
                    "too many messages during the resume: reconnect and resume",
                ))
            }
            None => Ok(()),
        }
    }

    /// The replay is over (`None`: `--resume-timeout` passed first): the
    /// `resumed` or `resume-failed` frame, then the held messages it did
    /// not cover. A late answer after a timeout finds nothing to do.
    pub(super) async fn end_resume(&mut self, answer: Option<Resumed>) -> Result<(), End> {
        let Some(resuming) = self.resuming.as_mut().filter(|r| r.replaying()) else {
            return Ok(());
        };
        let (outcome, frame, held) = resuming.finish(answer.ok_or(Outcome::TimedOut));
        let counted = match outcome {
            Outcome::Resumed => metrics::Resume::Resumed,
            Outcome::Failed => metrics::Resume::Failed,
            Outcome::TimedOut => metrics::Resume::TimedOut,
        };
        self.core.counters.resumed(counted);
        debug!(?outcome, held = held.len(), "resume ended");
        self.feed(&frame).await?;
        for p in &held {
            self.feed(p).await?;
        }
        self.ws.flush().await.map_err(End::Io)
    }
}
