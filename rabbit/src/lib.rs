//! `carrot`: the library the Rabbit tests share (filled by the Rabbit issue).
