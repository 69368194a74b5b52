// Placeholder: the React app's build replaces web/dist.
