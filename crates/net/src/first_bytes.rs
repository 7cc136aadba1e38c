//! A deadline on a connection's first request.
//!
//! A peer that connects and sends nothing, part of the HTTP/2 preface, or
//! part of its first HTTP/1 request head, would otherwise hold a descriptor
//! for ever. This wrapper fails the read once the deadline passes unless the
//! connection has sent the whole 24-byte HTTP/2 preface or the whole head of
//! its first HTTP/1 request (up to the blank line that ends it).
//!
//! From there the connection may idle between requests as long as it likes:
//! Mesos' clients (pymesos, the executor libraries) send every call over one
//! kept-alive connection and never retry a call the server closed under
//! them, so an idle timeout would lose an executor's status update after a
//! long task. hyper's own HTTP/1 header-read timeout is therefore off (it
//! also runs while a kept-alive connection idles); HTTP/2 keep-alive pings
//! still find dead peers, and the connection cap bounds the rest.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub(crate) struct FirstBytes<T> {
    inner: T,
    /// Armed until the protocol is known; `None` from then on.
    deadline: Option<Pin<Box<Sleep>>>,
    seen: usize,
    /// The last bytes of an HTTP/1 head read so far, to find its end
    /// across reads; `None` until the connection shows it is HTTP/1.
    http1_tail: Option<Vec<u8>>,
}

/// What ends an HTTP/1 request head.
const HEAD_END: &[u8; 4] = b"\r\n\r\n";

impl<T> FirstBytes<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            seen: 0,
            http1_tail: None,
        }
    }

    /// Notes the bytes of one read.
    fn saw(&mut self, new: &[u8]) {
        let Some(&first) = new.first() else { return };
        if self.deadline.is_none() {
            return;
        }
        if self.seen == 0 && first != H2_PREFACE[0] {
            self.http1_tail = Some(Vec::new());
        }
        self.seen += new.len();
        let done = match &mut self.http1_tail {
            Some(tail) => {
                tail.extend_from_slice(new);
                let found = tail.windows(HEAD_END.len()).any(|w| w == HEAD_END);
                let keep = tail.len().saturating_sub(HEAD_END.len() - 1);
                tail.drain(..keep);
                found
            }
            None => self.seen >= H2_PREFACE.len(),
        };
        if done {
            self.deadline = None;
            self.http1_tail = None;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstBytes<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                this.saw(new);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request started within the header-read timeout",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FirstBytes<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
