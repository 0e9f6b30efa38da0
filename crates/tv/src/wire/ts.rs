//! MPEG transport stream packets (ISO/IEC 13818-1 §2.4.3): just what the chunker needs —
//! the header, the adaptation field's `random_access_indicator`, and the PAT and PMT sections
//! that say which PID carries video.

/// A transport stream packet is always this long.
pub const TS_PACKET: usize = 188;
/// Every packet starts with this byte.
pub const SYNC: u8 = 0x47;

/// What is wrong with a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TsError {
    /// Not 188 bytes.
    #[error("a TS packet is 188 bytes, got {0}")]
    Length(usize),
    /// The first byte is not 0x47.
    #[error("TS packet without sync byte (0x{0:02x})")]
    Sync(u8),
    /// The adaptation field is longer than the packet.
    #[error("TS adaptation field of {0} bytes does not fit")]
    Adaptation(usize),
}

/// The parts of a packet header the chunker looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TsHeader {
    /// The packet identifier (13 bits).
    pub pid: u16,
    /// `payload_unit_start_indicator`: a PES packet or a PSI section starts here.
    pub pusi: bool,
    /// `continuity_counter` (4 bits).
    pub cc: u8,
    /// The adaptation field's `random_access_indicator`: a decoder can start here.
    pub random_access: bool,
    /// Where the payload starts in the packet (188 when there is none).
    pub payload_offset: usize,
}

/// Parses one packet's header.
pub fn parse_header(p: &[u8]) -> Result<TsHeader, TsError> {
    if p.len() != TS_PACKET {
        return Err(TsError::Length(p.len()));
    }
    if p[0] != SYNC {
        return Err(TsError::Sync(p[0]));
    }
    let pusi = p[1] & 0x40 != 0;
    let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
    let afc = (p[3] >> 4) & 0x3;
    let cc = p[3] & 0x0f;
    let mut random_access = false;
    let mut payload_offset = 4;
    if afc & 0x2 != 0 {
        let len = usize::from(p[4]);
        if 5 + len > TS_PACKET {
            return Err(TsError::Adaptation(len));
        }
        if len > 0 {
            random_access = p[5] & 0x40 != 0;
        }
        payload_offset = 5 + len;
    }
    if afc & 0x1 == 0 {
        payload_offset = TS_PACKET;
    }
    Ok(TsHeader {
        pid,
        pusi,
        cc,
        random_access,
        payload_offset,
    })
}

/// The start of a PSI section in a packet that begins one: after the pointer field.
fn section<'a>(p: &'a [u8], h: &TsHeader) -> Option<&'a [u8]> {
    if !h.pusi || h.payload_offset >= TS_PACKET {
        return None;
    }
    let pl = &p[h.payload_offset..];
    let ptr = usize::from(*pl.first()?);
    let s = pl.get(1 + ptr..)?;
    // table_id, section_syntax_indicator.. section_length (12 bits)
    let len = (usize::from(*s.get(1)? & 0x0f) << 8) | usize::from(*s.get(2)?);
    // The section must fit in this packet (ffmpeg's always do); the 4-byte CRC is excluded.
    let body = s.get(3..3 + len)?;
    body.get(..body.len().checked_sub(4)?)
}

/// The PMT PIDs a PAT packet names (program 0, the network PID, is skipped).
pub fn pat_pmt_pids(p: &[u8], h: &TsHeader) -> Vec<u16> {
    let Some(body) = section(p, h) else {
        return Vec::new();
    };
    // transport_stream_id(2) version(1) section_number(1) last_section_number(1)
    let Some(programs) = body.get(5..) else {
        return Vec::new();
    };
    programs
        .chunks_exact(4)
        .filter(|e| u16::from_be_bytes([e[0], e[1]]) != 0)
        .map(|e| (u16::from(e[2] & 0x1f) << 8) | u16::from(e[3]))
        .collect()
}

/// Whether an elementary stream type is video (MPEG-1/2, MPEG-4 part 2, H.264, H.265, …).
pub fn is_video_type(stream_type: u8) -> bool {
    matches!(
        stream_type,
        0x01 | 0x02 | 0x10 | 0x1b | 0x20 | 0x24 | 0x42 | 0xd1 | 0xea
    )
}

/// The video PIDs a PMT packet names.
pub fn pmt_video_pids(p: &[u8], h: &TsHeader) -> Vec<u16> {
    let Some(body) = section(p, h) else {
        return Vec::new();
    };
    // program_number(2) version(1) section_number(1) last(1) pcr_pid(2) program_info_length(2)
    let Some(pil) = body.get(7..9) else {
        return Vec::new();
    };
    let info_len = (usize::from(pil[0] & 0x0f) << 8) | usize::from(pil[1]);
    let mut rest = body.get(9 + info_len..).unwrap_or(&[]);
    let mut out = Vec::new();
    while rest.len() >= 5 {
        let ty = rest[0];
        let pid = (u16::from(rest[1] & 0x1f) << 8) | u16::from(rest[2]);
        let es_len = (usize::from(rest[3] & 0x0f) << 8) | usize::from(rest[4]);
        if is_video_type(ty) {
            out.push(pid);
        }
        rest = rest.get(5 + es_len..).unwrap_or(&[]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet with an adaptation field whose random_access_indicator is `rai`.
    pub(crate) fn packet(pid: u16, rai: bool, cc: u8) -> [u8; TS_PACKET] {
        let mut p = [0xffu8; TS_PACKET];
        p[0] = SYNC;
        p[1] = ((pid >> 8) as u8) & 0x1f;
        p[2] = pid as u8;
        p[3] = 0x30 | (cc & 0x0f);
        p[4] = 1;
        p[5] = if rai { 0x40 } else { 0 };
        p
    }

    #[test]
    fn header_fields_and_random_access() {
        let h = parse_header(&packet(0x100, true, 7)).unwrap();
        assert_eq!(
            (h.pid, h.cc, h.random_access, h.payload_offset),
            (0x100, 7, true, 6)
        );
        assert!(
            !parse_header(&packet(0x100, false, 0))
                .unwrap()
                .random_access
        );
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(parse_header(&[0x47; 10]), Err(TsError::Length(10)));
        let mut p = packet(1, false, 0);
        p[0] = 0;
        assert_eq!(parse_header(&p), Err(TsError::Sync(0)));
        let mut p = packet(1, false, 0);
        p[4] = 200;
        assert_eq!(parse_header(&p), Err(TsError::Adaptation(200)));
    }

    #[test]
    fn pat_and_pmt_name_the_video_pid() {
        let mut pat = [0xffu8; TS_PACKET];
        pat[..4].copy_from_slice(&[0x47, 0x40, 0x00, 0x10]);
        // pointer, table 0, len 13, tsid 1, ver, sec, last, program 1 -> pid 0x1000, crc
        pat[4..22].copy_from_slice(&[
            0, 0, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xf0, 0x00, 1, 2, 3, 4, 0xff,
        ]);
        let h = parse_header(&pat).unwrap();
        assert_eq!(pat_pmt_pids(&pat, &h), vec![0x1000]);
        let mut pmt = [0xffu8; TS_PACKET];
        pmt[..4].copy_from_slice(&[0x47, 0x50, 0x00, 0x10]);
        // table 2, len 23: prog 1, ver, sec, last, pcr 0x100, info 0,
        // h264 pid 0x100, aac pid 0x101, crc
        pmt[4..31].copy_from_slice(&[
            0, 2, 0xb0, 23, 0, 1, 0xc1, 0, 0, 0xe1, 0x00, 0xf0, 0, 0x1b, 0xe1, 0x00, 0xf0, 0, 0x0f,
            0xe1, 0x01, 0xf0, 0, 1, 2, 3, 4,
        ]);
        let h = parse_header(&pmt).unwrap();
        assert_eq!(pmt_video_pids(&pmt, &h), vec![0x100]);
    }
}
