//! A deadline on a connection's first bytes.
//!
//! hyper's HTTP/1 header-read timeout only starts once hyper knows the
//! connection speaks HTTP/1; before that, the auto builder waits for bytes to
//! tell HTTP/1 from the HTTP/2 preface with no timeout at all, so a peer that
//! connects and sends nothing (or part of the preface) would hold a
//! descriptor for ever. This wrapper fails the read once the deadline passes
//! unless the connection has shown it is HTTP/1 (a first byte other than the
//! preface's) or sent the whole 24-byte preface; from there hyper's own
//! timeouts (header read, HTTP/2 keep-alive) apply.

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
}

impl<T> FirstBytes<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            seen: 0,
        }
    }

    /// Notes a read of `len` bytes starting with `first`.
    fn saw(&mut self, first: Option<u8>, len: usize) {
        let Some(first) = first else { return };
        if self.deadline.is_none() {
            return;
        }
        let http1 = self.seen == 0 && first != H2_PREFACE[0];
        self.seen += len;
        if http1 || self.seen >= H2_PREFACE.len() {
            self.deadline = None;
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
                let (first, len) = (new.first().copied(), new.len());
                this.saw(first, len);
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
