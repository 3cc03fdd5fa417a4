//! Sanctions and PEP screening: list ingestion in the official formats, name normalisation,
//! candidate search and scoring with explanations.
