//! The tabs by name: their order, titles, keymap sections, the action that shows each and
//! what the tour says of it. Everything that counts or walks the tabs reads [`Tab::ALL`].

use super::action::Action;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Data,
    Adapter,
    Train,
    Chat,
    Runs,
}

impl Tab {
    /// Every tab, in the tab bar's order.
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

    /// The action that shows this tab (its number key).
    pub fn action(self) -> Action {
        match self {
            Tab::Data => Action::TabData,
            Tab::Adapter => Action::TabAdapter,
            Tab::Train => Action::TabTrain,
            Tab::Chat => Action::TabChat,
            Tab::Runs => Action::TabRuns,
        }
    }

    /// What the first start's tour says of this tab.
    pub fn about(self) -> &'static str {
        match self {
            Tab::Data => "your datasets: records, errors (v), convert (c), tokens (t)",
            Tab::Adapter => "model, LoRA and training settings; r starts a run",
            Tab::Train => "the run live: loss, eval, samples, memory; x stops it",
            Tab::Chat => "talk to the model with and without the adapter (b)",
            Tab::Runs => "every run: Enter watches, o chats, c compares, v evaluates",
        }
    }

    /// The tab `a` shows, if it shows one.
    pub fn for_action(a: Action) -> Option<Tab> {
        Tab::ALL.into_iter().find(|t| t.action() == a)
    }

    pub fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    /// The tab after this one, the first after the last.
    pub fn next(self) -> Tab {
        Tab::ALL[(self.index() + 1) % Tab::ALL.len()]
    }

    /// The tab before this one, the last before the first.
    pub fn prev(self) -> Tab {
        Tab::ALL[(self.index() + Tab::ALL.len() - 1) % Tab::ALL.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_go_round_and_each_has_its_own_action() {
        for t in Tab::ALL {
            assert_eq!(t.next().prev(), t);
            assert_eq!(Tab::for_action(t.action()), Some(t));
        }
        assert_eq!(Tab::ALL[Tab::ALL.len() - 1].next(), Tab::ALL[0]);
        assert_eq!(Tab::ALL[0].prev(), Tab::ALL[Tab::ALL.len() - 1]);
        assert_eq!(Tab::for_action(Action::Quit), None);
    }
}
