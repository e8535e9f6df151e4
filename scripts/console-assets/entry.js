// The pieces of OpenLayers the console uses, as one global (window.CMOL): no CDN, no module loader.
import Map from 'ol/Map.js';
import View from 'ol/View.js';
import ImageLayer from 'ol/layer/Image.js';
import VectorImageLayer from 'ol/layer/VectorImage.js';
import Static from 'ol/source/ImageStatic.js';
import VectorSource from 'ol/source/Vector.js';
import Projection from 'ol/proj/Projection.js';
import Feature from 'ol/Feature.js';
import Polygon from 'ol/geom/Polygon.js';
import {Style, Stroke, Fill} from 'ol/style.js';
import {getCenter} from 'ol/extent.js';
import {defaults as defaultControls} from 'ol/control/defaults.js';
window.CMOL = {Map, View, ImageLayer, VectorImageLayer, Static, VectorSource, Projection, Feature, Polygon,
               Style, Stroke, Fill, getCenter, defaultControls};
