// The pieces of OpenLayers the console uses, as one global (window.CMOL): no CDN, no module loader.
import Map from 'ol/Map.js';
import View from 'ol/View.js';
import ImageLayer from 'ol/layer/Image.js';
import Static from 'ol/source/ImageStatic.js';
import ImageCanvas from 'ol/source/ImageCanvas.js';
import Projection from 'ol/proj/Projection.js';
import {getCenter} from 'ol/extent.js';
import {defaults as defaultControls} from 'ol/control/defaults.js';
window.CMOL = {Map, View, ImageLayer, Static, ImageCanvas, Projection, getCenter, defaultControls};
