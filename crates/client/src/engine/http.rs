//! HTTP/1.1 requests over one kept-alive TCP connection (hyper's client `conn` API).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tracing::debug;

use super::endpoint::Endpoint;
use crate::error::EngineError;

/// One HTTP/1.1 connection, opened on first use and opened again when the server closed it
/// between two requests.
pub(crate) struct HttpConn {
    endpoint: Arc<Endpoint>,
    max_body: usize,
    sender: Option<SendRequest<Full<Bytes>>>,
    driver: Option<JoinHandle<()>>,
}

impl HttpConn {
    pub(crate) fn new(endpoint: Arc<Endpoint>, max_body: usize) -> HttpConn {
        HttpConn {
            endpoint,
            max_body,
            sender: None,
            driver: None,
        }
    }

    /// Sends one request and reads the whole response; a status other than 200 is an error.
    pub(crate) async fn request(
        &mut self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
    ) -> Result<Bytes, EngineError> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path_and_query)
            .header(HOST, self.endpoint.authority.as_str());
        if method == Method::POST {
            request = request.header(CONTENT_TYPE, "text/plain;charset=UTF-8");
        }
        let request = request.body(Full::new(body))?;
        let sender = self.ready().await?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), self.max_body)
            .collect()
            .await
            .map_err(|error| match error.downcast::<hyper::Error>() {
                Ok(error) => EngineError::Http(*error),
                Err(_) => EngineError::BodyTooLarge,
            })?
            .to_bytes();
        if status != http::StatusCode::OK {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(EngineError::Status {
                status: status.as_u16(),
                body: text,
            });
        }
        Ok(body)
    }

    /// The sender of a live connection, connecting when there is none.
    async fn ready(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, EngineError> {
        let alive = match self.sender.as_mut() {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !alive {
            self.close();
            let stream = TcpStream::connect((self.endpoint.host.as_str(), self.endpoint.port))
                .await
                .map_err(EngineError::Connect)?;
            // Small packets (pongs, acks) should leave at once.
            let _ = stream.set_nodelay(true);
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
            self.driver = Some(tokio::spawn(async move {
                if let Err(error) = connection.await {
                    debug!(%error, "http connection ended");
                }
            }));
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or(EngineError::Closed)
    }

    fn close(&mut self) {
        self.sender = None;
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }
}

impl Drop for HttpConn {
    fn drop(&mut self) {
        self.close();
    }
}
