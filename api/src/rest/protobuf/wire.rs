//! The protobuf wire format, read: a message as a sequence of numbered fields, each a varint,
//! a fixed-width value or a length-delimited run of bytes.

use crate::error::ApiError;

/// One field's value as the wire carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

/// One field of a message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WireField<'a> {
    pub number: u64,
    pub raw: Raw<'a>,
}

pub fn bad(what: &str) -> ApiError {
    ApiError::BadRequest(format!("the protobuf body is malformed: {what}"))
}

pub fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ApiError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(bad("varint too long"))
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, len: usize) -> Result<&'a [u8], ApiError> {
    let end = pos.checked_add(len).ok_or_else(|| bad("length"))?;
    let slice = buf.get(*pos..end).ok_or_else(|| bad("truncated field"))?;
    *pos = end;
    Ok(slice)
}

/// The fields of `buf`, in wire order.
pub fn fields(buf: &[u8]) -> Result<Vec<WireField<'_>>, ApiError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        let raw = match wire {
            0 => Raw::Varint(varint(buf, &mut pos)?),
            1 => {
                let b = take(buf, &mut pos, 8)?;
                Raw::Fixed64(u64::from_le_bytes(
                    b.try_into().map_err(|_| bad("fixed64"))?,
                ))
            }
            5 => {
                let b = take(buf, &mut pos, 4)?;
                Raw::Fixed32(u32::from_le_bytes(
                    b.try_into().map_err(|_| bad("fixed32"))?,
                ))
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| bad("length"))?;
                Raw::Bytes(take(buf, &mut pos, len)?)
            }
            _ => return Err(bad("unsupported wire type")),
        };
        out.push(WireField { number, raw });
    }
    Ok(out)
}

/// The last length-delimited value of field `number` (protobuf's "last one wins").
pub fn bytes_of<'a>(fields: &[WireField<'a>], number: u64) -> Option<&'a [u8]> {
    fields.iter().rev().find_map(|f| match f.raw {
        Raw::Bytes(b) if f.number == number => Some(b),
        _ => None,
    })
}

/// The last varint of field `number`.
pub fn varint_of(fields: &[WireField<'_>], number: u64) -> Option<u64> {
    fields.iter().rev().find_map(|f| match f.raw {
        Raw::Varint(v) if f.number == number => Some(v),
        _ => None,
    })
}

pub fn text(bytes: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| bad("a string is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_every_wire_type_are_read() {
        // 1: varint 300; 2: bytes "hi"; 3: fixed64 1; 4: fixed32 2.
        let buf = [
            0x08, 0xac, 0x02, 0x12, 0x02, b'h', b'i', 0x19, 1, 0, 0, 0, 0, 0, 0, 0, 0x25, 2, 0, 0,
            0,
        ];
        let f = fields(&buf).expect("reads");
        assert_eq!(f[0].raw, Raw::Varint(300));
        assert_eq!(f[1].raw, Raw::Bytes(b"hi"));
        assert_eq!(f[2].raw, Raw::Fixed64(1));
        assert_eq!(f[3].raw, Raw::Fixed32(2));
    }

    #[test]
    fn truncated_input_is_a_bad_request() {
        assert_eq!(fields(&[0x12, 0x05, b'a']).expect_err("short").code(), 400);
        assert_eq!(fields(&[0x08, 0x80]).expect_err("varint").code(), 400);
    }
}
