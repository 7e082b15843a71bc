//! The frame codec of the wire contract (all integers big-endian):
//!
//! - request  `[method_id: u16][request_id: u32][payload_len: u32][protobuf]`
//! - response `[status: u8][request_id: u32][payload_len: u32][protobuf]`
//! - push     `[event: u16][payload_len: u32][protobuf]`
//!
//! A reader parses the fixed header first, checks the declared length
//! against its bound, and only then reads (allocates) the payload, so a frame
//! over the bound is refused without being allocated.

use crate::status::Status;

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("truncated frame: {needed} bytes needed, {have} present")]
    Truncated { needed: usize, have: usize },
    #[error("frame payload of {len} bytes is over the bound of {max} bytes")]
    TooLarge { len: u32, max: u32 },
    #[error("unknown response status code {0}")]
    UnknownStatus(u8),
}

/// A fixed-size frame header.
pub trait Header: Sized {
    const LEN: usize;
    /// Parses the first `LEN` bytes of `buf`.
    fn parse(buf: &[u8]) -> Result<Self, FrameError>;
    fn write(&self, out: &mut Vec<u8>);
    fn declared_len(&self) -> u32;

    /// The payload length, refused when over `max`.
    fn payload_len(&self, max: u32) -> Result<usize, FrameError> {
        let len = self.declared_len();
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        Ok(len as usize)
    }
}

fn need(buf: &[u8], needed: usize) -> Result<(), FrameError> {
    if buf.len() < needed {
        return Err(FrameError::Truncated { needed, have: buf.len() });
    }
    Ok(())
}

fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub method: u16,
    pub request_id: u32,
    pub payload_len: u32,
}

impl Header for RequestHeader {
    const LEN: usize = 10;
    fn parse(buf: &[u8]) -> Result<Self, FrameError> {
        need(buf, Self::LEN)?;
        Ok(Self { method: be_u16(buf), request_id: be_u32(&buf[2..]), payload_len: be_u32(&buf[6..]) })
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.method.to_be_bytes());
        out.extend_from_slice(&self.request_id.to_be_bytes());
        out.extend_from_slice(&self.payload_len.to_be_bytes());
    }
    fn declared_len(&self) -> u32 {
        self.payload_len
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    pub status: Status,
    pub request_id: u32,
    pub payload_len: u32,
}

impl Header for ResponseHeader {
    const LEN: usize = 9;
    fn parse(buf: &[u8]) -> Result<Self, FrameError> {
        need(buf, Self::LEN)?;
        let status = Status::from_u8(buf[0]).ok_or(FrameError::UnknownStatus(buf[0]))?;
        Ok(Self { status, request_id: be_u32(&buf[1..]), payload_len: be_u32(&buf[5..]) })
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.push(self.status as u8);
        out.extend_from_slice(&self.request_id.to_be_bytes());
        out.extend_from_slice(&self.payload_len.to_be_bytes());
    }
    fn declared_len(&self) -> u32 {
        self.payload_len
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushHeader {
    pub event: u16,
    pub payload_len: u32,
}

impl Header for PushHeader {
    const LEN: usize = 6;
    fn parse(buf: &[u8]) -> Result<Self, FrameError> {
        need(buf, Self::LEN)?;
        Ok(Self { event: be_u16(buf), payload_len: be_u32(&buf[2..]) })
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.event.to_be_bytes());
        out.extend_from_slice(&self.payload_len.to_be_bytes());
    }
    fn declared_len(&self) -> u32 {
        self.payload_len
    }
}

/// A header and its payload, as sent on one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<H> {
    pub header: H,
    pub payload: Vec<u8>,
}

pub type RequestFrame = Frame<RequestHeader>;
pub type ResponseFrame = Frame<ResponseHeader>;
pub type PushFrame = Frame<PushHeader>;

impl<H: Header> Frame<H> {
    /// Decodes one frame from the front of `buf`, returning it and the number
    /// of bytes it took. The declared length is checked against `max_payload`
    /// before the payload is copied.
    pub fn decode(buf: &[u8], max_payload: u32) -> Result<(Self, usize), FrameError> {
        let header = H::parse(buf)?;
        let len = header.payload_len(max_payload)?;
        // On 32-bit routers a bound near u32::MAX would overflow usize.
        let end = H::LEN
            .checked_add(len)
            .ok_or(FrameError::TooLarge { len: header.declared_len(), max: max_payload })?;
        need(buf, end)?;
        Ok((Frame { header, payload: buf[H::LEN..end].to_vec() }, end))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(H::LEN + self.payload.len());
        self.header.write(&mut out);
        out.extend_from_slice(&self.payload);
        out
    }
}

fn len_u32(payload: &[u8]) -> u32 {
    // Payloads are built by this process and bounded far below 4 GiB.
    u32::try_from(payload.len()).expect("payload length fits in u32")
}

impl RequestFrame {
    pub fn new(method: u16, request_id: u32, payload: Vec<u8>) -> Self {
        let header = RequestHeader { method, request_id, payload_len: len_u32(&payload) };
        Frame { header, payload }
    }
}

impl ResponseFrame {
    pub fn new(status: Status, request_id: u32, payload: Vec<u8>) -> Self {
        let header = ResponseHeader { status, request_id, payload_len: len_u32(&payload) };
        Frame { header, payload }
    }
}

impl PushFrame {
    pub fn new(event: u16, payload: Vec<u8>) -> Self {
        Frame { header: PushHeader { event, payload_len: len_u32(&payload) }, payload }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = 64;

    fn check_all_truncations<H: Header + std::fmt::Debug + PartialEq>(frame: &Frame<H>) {
        let bytes = frame.encode();
        let (back, used) = Frame::<H>::decode(&bytes, MAX).unwrap();
        assert_eq!(&back, frame);
        assert_eq!(used, bytes.len());
        for cut in 0..bytes.len() {
            let err = Frame::<H>::decode(&bytes[..cut], MAX).unwrap_err();
            let needed = if cut < H::LEN { H::LEN } else { bytes.len() };
            assert_eq!(err, FrameError::Truncated { needed, have: cut }, "cut at {cut}");
        }
    }

    #[test]
    fn request_layout_is_big_endian() {
        let f = RequestFrame::new(0x0102, 0x0304_0506, vec![0xAA, 0xBB]);
        assert_eq!(f.encode(), [1, 2, 3, 4, 5, 6, 0, 0, 0, 2, 0xAA, 0xBB]);
    }

    #[test]
    fn response_and_push_layouts() {
        let r = ResponseFrame::new(Status::QuotaExceeded, 7, vec![9]);
        assert_eq!(r.encode(), [6, 0, 0, 0, 7, 0, 0, 0, 1, 9]);
        let p = PushFrame::new(1, vec![]);
        assert_eq!(p.encode(), [0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn every_truncation_is_reported() {
        check_all_truncations(&RequestFrame::new(200, 1, b"hello".to_vec()));
        check_all_truncations(&ResponseFrame::new(Status::Ok, 1, b"hello".to_vec()));
        check_all_truncations(&PushFrame::new(1, b"hello".to_vec()));
        check_all_truncations(&RequestFrame::new(201, 2, vec![]));
    }

    #[test]
    fn oversized_length_is_refused_from_the_header_alone() {
        // Only the header is present: the bound is checked before any payload.
        let mut header = Vec::new();
        RequestHeader { method: 200, request_id: 1, payload_len: MAX + 1 }.write(&mut header);
        assert_eq!(RequestFrame::decode(&header, MAX), Err(FrameError::TooLarge { len: MAX + 1, max: MAX }));
        let mut header = Vec::new();
        RequestHeader { method: 200, request_id: 1, payload_len: u32::MAX }.write(&mut header);
        assert_eq!(RequestFrame::decode(&header, MAX), Err(FrameError::TooLarge { len: u32::MAX, max: MAX }));
        let mut header = Vec::new();
        PushHeader { event: 1, payload_len: MAX + 1 }.write(&mut header);
        assert!(matches!(PushFrame::decode(&header, MAX), Err(FrameError::TooLarge { .. })));
        let exact = RequestFrame::new(200, 1, vec![0; MAX as usize]);
        assert!(RequestFrame::decode(&exact.encode(), MAX).is_ok());
    }

    #[test]
    fn unknown_status_byte_is_an_error() {
        let mut bytes = ResponseFrame::new(Status::Ok, 1, vec![]).encode();
        bytes[0] = 200;
        assert_eq!(ResponseFrame::decode(&bytes, MAX), Err(FrameError::UnknownStatus(200)));
    }

    #[test]
    fn decode_reports_consumed_bytes_with_trailing_data() {
        let mut bytes = RequestFrame::new(203, 9, vec![1, 2, 3]).encode();
        bytes.extend_from_slice(&[0xFF; 4]);
        let (f, used) = RequestFrame::decode(&bytes, MAX).unwrap();
        assert_eq!(used, 13);
        assert_eq!(f.payload, [1, 2, 3]);
    }
}
