//! Agency adapters: turn police, programme-provider and generic records into events and publish them.
