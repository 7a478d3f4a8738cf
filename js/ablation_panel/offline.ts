/**
 * The model a static HTML export of an AblationPanel renders with. There is no kernel to recompute
 * predictions, so nothing answers: `to_html` sets `export_note`, and the view disables its controls and
 * shows the note beside the state and prediction saved in the page.
 */
import { type ExportedState, StaticModel, restoreBuffers } from "../shared/static_model";

export function createOfflineModel(exported: ExportedState): StaticModel {
  return new StaticModel(restoreBuffers(exported));
}
