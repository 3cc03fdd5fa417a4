//! A streaming XML walker for list files: it reads the document once with quick-xml and builds a
//! small tree only for each record element (one UN `INDIVIDUAL`, one OFAC `DistinctParty`…), so
//! memory stays proportional to one record, not to the file. Every failure names its line.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::super::limits::{FIELD_CHARS_MAX, XML_DEPTH_MAX, XML_RECORD_NODES_MAX};

/// One element of a record, with its attributes, direct text and children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Local name (namespace prefix removed).
    pub name: String,
    /// Attributes by local name, unescaped.
    pub attrs: Vec<(String, String)>,
    /// Concatenated text directly inside the element (not trimmed).
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Node>,
    /// Line of the start tag (1-based).
    pub line: usize,
}

impl Node {
    /// The first child with this name.
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child with this name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Every descendant (depth first, document order) with this name.
    pub fn descendants<'a>(&'a self, name: &str, out: &mut Vec<&'a Node>) {
        for child in &self.children {
            if child.name == name {
                out.push(child);
            }
            child.descendants(name, out);
        }
    }

    /// Trimmed text of the first child with this name, or "".
    pub fn child_text(&self, name: &str) -> &str {
        self.child(name).map(|c| c.text.trim()).unwrap_or("")
    }

    /// An attribute's value.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An attribute's trimmed value, or "".
    pub fn attr_or_empty(&self, name: &str) -> &str {
        self.attr(name).map(str::trim).unwrap_or("")
    }
}

/// Where a document failed: line and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlFailure {
    /// 1-based line.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

/// The root element of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// Local name.
    pub name: String,
    /// Default namespace (`xmlns`) if declared.
    pub namespace: Option<String>,
}

struct Lines<'a> {
    text: &'a [u8],
    position: usize,
    line: usize,
}

impl Lines<'_> {
    /// Line of a byte offset; offsets only move forward during a parse.
    fn at(&mut self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        if offset >= self.position {
            self.line += self.text[self.position..offset]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            self.position = offset;
        }
        self.line
    }
}

fn local_name(name: &str) -> String {
    match name.rfind(':') {
        Some(colon) => name[colon + 1..].to_owned(),
        None => name.to_owned(),
    }
}

fn node_of(start: &BytesStart<'_>, line: usize) -> Result<Node, String> {
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute: {e}"))?;
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad attribute value: {e}"))?;
        if value.len() > FIELD_CHARS_MAX {
            return Err("attribute value too long".to_owned());
        }
        attrs.push((local_name(attr.key.as_ref()), value.into_owned()));
    }
    Ok(Node {
        name: local_name(start.name().as_ref()),
        attrs,
        text: String::new(),
        children: Vec::new(),
        line,
    })
}

/// Finds the root element without reading further.
pub fn root_of(text: &str) -> Option<Root> {
    let mut reader = Reader::from_str(text);
    loop {
        match reader.read_event() {
            Ok(Event::Start(start)) | Ok(Event::Empty(start)) => {
                let node = node_of(&start, 1).ok()?;
                return Some(Root {
                    namespace: node.attr("xmlns").map(str::to_owned),
                    name: node.name,
                });
            }
            Ok(Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Walks the document; every element for which `is_record(depth, name)` holds (depth 0 is the
/// root) is built into a `Node` and handed to `on_record`, whose error stops the walk.
pub fn stream_records(
    text: &str,
    is_record: impl Fn(usize, &str) -> bool,
    mut on_record: impl FnMut(Node) -> Result<(), String>,
) -> Result<Root, XmlFailure> {
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut lines = Lines {
        text: text.as_bytes(),
        position: 0,
        line: 1,
    };
    let mut depth = 0usize;
    let mut root: Option<Root> = None;
    let mut open_names: Vec<String> = Vec::new();
    // The record being built: a stack of open nodes, the record itself at index 0.
    let mut building: Vec<Node> = Vec::new();
    let mut record_nodes = 0usize;
    loop {
        let offset = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| XmlFailure {
            line: lines.at(reader.error_position() as usize),
            reason: e.to_string(),
        })?;
        let line = lines.at(offset);
        let fail = |reason: String| XmlFailure { line, reason };
        match event {
            Event::Start(_) | Event::Empty(_) => {
                let (start, self_closing) = match &event {
                    Event::Start(start) => (start, false),
                    Event::Empty(start) => (start, true),
                    _ => continue,
                };
                let node = node_of(start, line).map_err(fail)?;
                if root.is_none() {
                    root = Some(Root {
                        namespace: node.attr("xmlns").map(str::to_owned),
                        name: node.name.clone(),
                    });
                } else if depth == 0 {
                    return Err(fail("content after the root element".to_owned()));
                }
                if depth >= XML_DEPTH_MAX {
                    return Err(fail(format!("nesting deeper than {XML_DEPTH_MAX}")));
                }
                let starts_record = building.is_empty() && is_record(depth, &node.name);
                if starts_record || !building.is_empty() {
                    record_nodes += 1;
                    if record_nodes > XML_RECORD_NODES_MAX {
                        return Err(fail(format!(
                            "record <{}> has more than {XML_RECORD_NODES_MAX} elements",
                            building.first().map(|n| n.name.as_str()).unwrap_or("")
                        )));
                    }
                    building.push(node);
                } else {
                    open_names.push(node.name);
                }
                depth += 1;
                if self_closing {
                    close(
                        &mut building,
                        &mut open_names,
                        &mut depth,
                        &mut record_nodes,
                        &mut on_record,
                    )
                    .map_err(fail)?;
                }
            }
            Event::End(_) => {
                close(
                    &mut building,
                    &mut open_names,
                    &mut depth,
                    &mut record_nodes,
                    &mut on_record,
                )
                .map_err(fail)?;
            }
            Event::Text(content) => {
                if let Some(current) = building.last_mut() {
                    current.text.push_str(&content.xml10_content());
                    if current.text.len() > FIELD_CHARS_MAX {
                        return Err(fail(format!("text of <{}> too long", current.name)));
                    }
                } else if depth == 0 && !content.xml10_content().trim().is_empty() {
                    return Err(fail("text outside the root element".to_owned()));
                }
            }
            Event::CData(content) => {
                if let Some(current) = building.last_mut() {
                    current.text.push_str(&content.xml10_content());
                    if current.text.len() > FIELD_CHARS_MAX {
                        return Err(fail(format!("text of <{}> too long", current.name)));
                    }
                }
            }
            Event::GeneralRef(reference) => {
                let resolved: String = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = reference.xml10_content();
                        match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(value) => value.to_owned(),
                            None => return Err(fail(format!("unknown entity &{name};"))),
                        }
                    }
                    Err(e) => return Err(fail(format!("bad character reference: {e}"))),
                };
                if let Some(current) = building.last_mut() {
                    current.text.push_str(&resolved);
                }
            }
            Event::Eof => {
                if depth != 0 {
                    let open = building
                        .last()
                        .map(|n| n.name.clone())
                        .or_else(|| open_names.last().cloned())
                        .unwrap_or_default();
                    return Err(fail(format!("file ends inside <{open}>")));
                }
                return root.ok_or_else(|| fail("no root element".to_owned()));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
}

fn close(
    building: &mut Vec<Node>,
    open_names: &mut Vec<String>,
    depth: &mut usize,
    record_nodes: &mut usize,
    on_record: &mut impl FnMut(Node) -> Result<(), String>,
) -> Result<(), String> {
    *depth = depth.saturating_sub(1);
    if let Some(node) = building.pop() {
        match building.last_mut() {
            Some(parent) => parent.children.push(node),
            None => {
                *record_nodes = 0;
                on_record(node)?;
            }
        }
    } else {
        open_names.pop();
    }
    Ok(())
}
