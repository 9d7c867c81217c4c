//! The phone receptionist: numbers a tenant answers on, the receptionist's versioned settings, call logs,
//! call-minute metering, and the pure pieces of the call bridge (Twilio signatures, stream tokens, TwiML,
//! the Media Streams and Realtime wire messages, playback tracking for barge-in, transcripts and summaries).
//!
//! The bridge itself (`functions/call-bridge`) speaks WebSockets and HTTP and calls into here; nothing in
//! this module knows a socket.

pub mod calls;
pub mod media_streams;
pub mod metering;
pub mod phone;
pub mod playback;
pub mod pricing;
pub mod realtime;
pub mod receptionist;
pub mod settlement;
pub mod signature;
pub mod summary;
pub mod token;
pub mod transcript;
pub mod twiml;

pub use calls::{CallLog, CallSid, EndReason};
pub use phone::PhoneNumber;
pub use receptionist::{Language, ReceptionistSettings, Voice};

use crate::store::StoreError;

/// What the voice services can refuse or fail with (the management routes map these to the contract once).
#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    /// The operator provisioned this number already.
    #[error("the number {0} is already provisioned")]
    NumberExists(PhoneNumber),
    /// The number is already assigned (to this tenant or another: a second claim is a conflict).
    #[error("the number {0} is already assigned")]
    NumberTaken(PhoneNumber),
    /// No such number (not provisioned), or not the caller's (indistinguishable on purpose).
    #[error("phone number not found")]
    NumberNotFound,
    /// No such call, or not the caller's.
    #[error("call not found")]
    CallNotFound,
    #[error("receptionist settings version {0} not found")]
    VersionNotFound(u32),
    /// Concurrent changes kept winning; the caller may retry.
    #[error("the receptionist settings changed while they were being updated; try again")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}
