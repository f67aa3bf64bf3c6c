"""Text this project wrote for the persona space: role descriptions, neutral questions, drift conversations."""
