//! Reading a call's body within `server.max_request_bytes` and `server.request_timeout`;
//! and, when a body is refused before it was read whole, a lingering close: what the client
//! still sends is read and dropped for a while, so that a client that writes its whole body
//! before reading gets the answer instead of a connection reset.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Request;
use hyper::body::Incoming;
use zeroize::Zeroizing;

use crate::error::Error;

/// The longest a refused body is drained.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// The whole body, or why not with what is left of it. It may hold credentials: it is kept
/// in a buffer zeroed on drop, sized from Content-Length when the caller sent one.
pub async fn read(
    req: Request<Incoming>,
    limit: usize,
    within: Duration,
) -> Result<Zeroizing<Vec<u8>>, (Error, Incoming)> {
    let too_large = || {
        Error::PayloadTooLarge(format!(
            "the request body is over server.max_request_bytes ({limit} bytes)"
        ))
    };
    let announced = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let mut body = req.into_body();
    if announced.is_some_and(|n| n > limit as u64) {
        return Err((too_large(), body));
    }
    let mut read = Zeroizing::new(Vec::with_capacity(announced.unwrap_or(0) as usize));
    let reading = async {
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| Error::BadRequest(format!("could not read the request body: {e}")))?;
            if let Some(data) = frame.data_ref() {
                if read.len() + data.len() > limit {
                    return Err(too_large());
                }
                if read.capacity() < read.len() + data.len() {
                    grow(&mut read, data.len());
                }
                read.extend_from_slice(data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(within, reading).await {
        Ok(Ok(())) => Ok(read),
        Ok(Err(e)) => Err((e, body)),
        Err(_) => Err((
            Error::BadRequest(format!(
                "the request body did not arrive within {within:?} (server.request_timeout)"
            )),
            body,
        )),
    }
}

/// Makes room for `more` bytes by moving `read` into a bigger buffer and zeroing the old one
/// (a plain reallocation would leave its bytes behind in freed memory).
fn grow(read: &mut Zeroizing<Vec<u8>>, more: usize) {
    let wanted = (read.len() + more).max(read.capacity() * 2);
    let mut bigger = Zeroizing::new(Vec::with_capacity(wanted));
    bigger.extend_from_slice(read);
    *read = bigger;
}

/// Reads and drops the rest of a refused body: at most `max_bytes`, for at most
/// [`LINGER_TIME`]. Then the connection closes with the client's data read.
pub async fn linger(mut rest: Incoming, max_bytes: usize) {
    let drain = async {
        let mut seen = 0;
        while let Some(Ok(frame)) = rest.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > max_bytes {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}
