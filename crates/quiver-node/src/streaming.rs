//! Server-streaming gRPC answers fed from a channel, so the work behind them runs on a task
//! (or blocking thread) of its own and stops when the caller goes away.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tonic::Status;

pub type Streamed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub fn channel_stream<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> Streamed<T> {
    Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}
