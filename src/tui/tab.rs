//! The five tabs by name: order, titles and keymap sections.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Data,
    Adapter,
    Train,
    Chat,
    Runs,
}

impl Tab {
    pub const ALL: [Tab; 5] = [Tab::Data, Tab::Adapter, Tab::Train, Tab::Chat, Tab::Runs];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Data => "Data",
            Tab::Adapter => "Adapter",
            Tab::Train => "Train",
            Tab::Chat => "Chat",
            Tab::Runs => "Runs",
        }
    }

    /// The keys.yaml section for this tab.
    pub fn scope(self) -> &'static str {
        match self {
            Tab::Data => "data",
            Tab::Adapter => "adapter",
            Tab::Train => "train",
            Tab::Chat => "chat",
            Tab::Runs => "runs",
        }
    }

    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}
